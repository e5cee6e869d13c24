package cni

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/weftnet/weft/cni/ipam"
)

// Del detaches the sandbox and frees its addresses. It succeeds when there
// is nothing left to do: the netns gone, the veth gone, DEL run twice.
func Del(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := checkArgs(args, false); err != nil {
		return err
	}
	if args.Netns != "" {
		if netns, err := ns.GetNS(args.Netns); err == nil {
			_ = netns.Do(func(ns.NetNS) error {
				deleteLink(args.IfName)
				return nil
			})
			netns.Close()
		}
	}
	deleteLink(HostVethName(args.ContainerID, args.IfName))
	releaseAttachment(conf, args)
	store, done, err := lockedStore(conf)
	if err != nil {
		return err
	}
	defer done()
	if _, err := store.Release(ipam.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}); err != nil {
		return ioErr("release", err)
	}
	return nil
}
