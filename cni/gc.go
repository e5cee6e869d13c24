package cni

import (
	"net/http"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/cni/ipam"
)

// GC removes reservations and host veths of attachments the runtime no
// longer lists in cni.dev/valid-attachments.
func GC(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	valid := map[ipam.Attachment]bool{}
	for _, a := range conf.ValidAttachments {
		valid[ipam.Attachment{ContainerID: a.ContainerID, IfName: a.IfName}] = true
	}
	store, done, err := lockedStore(conf)
	if err != nil {
		return err
	}
	defer done()
	held, err := store.List()
	if err != nil {
		return ioErr("ipam", err)
	}
	// Only the veths of attachments this network held and the runtime no
	// longer lists: a wv* veth of another network, or of an ADD still
	// running, is not this GC's to remove.
	stale := map[string]bool{}
	for ip, who := range held {
		if !valid[who] {
			if err := store.ReleaseAddr(ip); err != nil {
				return ioErr("gc "+ip.String(), err)
			}
			stale[HostVethName(who.ContainerID, who.IfName)] = true
		}
	}
	for name := range stale {
		if l, err := netlink.LinkByName(name); err == nil {
			if _, ok := l.(*netlink.Veth); ok {
				_ = netlink.LinkDel(l) // best effort: the runtime's DEL removes it too
			}
		}
	}
	return nil
}

// Status reports whether the agent is ready, by asking its /readyz.
func Status(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.ReadyURL == "" {
		return nil
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(conf.ReadyURL)
	if err != nil {
		return cniErr(types.ErrPluginNotAvailable, "weft agent is not answering at %s: is the weft-agent pod running on this node?", conf.ReadyURL)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return cniErr(types.ErrPluginNotAvailable, "weft agent at %s is not ready yet (%s)", conf.ReadyURL, resp.Status)
	}
	return nil
}
