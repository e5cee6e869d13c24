package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/weftnet/weft/api"
)

// addTimeout bounds an ADD's call to the agent: it answers once the pod's
// NetworkPolicy is programmed, which takes milliseconds when all is well
// (the agent itself gives up after 3 s waiting for the pod and 10 s for
// nftables). A DEL only informs, and waits less.
const (
	addTimeout = 15 * time.Second
	delTimeout = 2 * time.Second
)

// podIdentity reads K8S_POD_NAMESPACE and K8S_POD_NAME from CNI_ARGS, as
// kubelet's runtimes pass them; outside Kubernetes both are empty.
func podIdentity(cniArgs string) (ns, name string) {
	for _, kv := range strings.Split(cniArgs, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "K8S_POD_NAMESPACE":
			ns = v
		case "K8S_POD_NAME":
			name = v
		}
	}
	return ns, name
}

// tellAgent reports an attachment to the agent on its Unix socket.
func tellAgent(socket, method string, a api.Attachment, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	b, _ := json.Marshal(a)
	req, err := http.NewRequest(method, "http://weft-agent"+api.AttachmentsPath, bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("weft agent at %s: %w", socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("weft agent: %s", strings.TrimSpace(string(msg)))
	}
	return nil
}

// registerAttachment asks the agent to program the pod's NetworkPolicy;
// until it has, the node drops the pod's traffic.
func registerAttachment(conf *NetConf, args *skel.CmdArgs, addrs []netip.Addr) error {
	if conf.AgentSocket == "" {
		return nil
	}
	ns, name := podIdentity(args.Args)
	a := api.Attachment{ContainerID: args.ContainerID, IfName: args.IfName, Namespace: ns, Name: name}
	for _, ip := range addrs {
		a.IPs = append(a.IPs, ip.String())
	}
	if err := tellAgent(conf.AgentSocket, http.MethodPost, a, addTimeout); err != nil {
		releaseAttachment(conf, args)
		return cniErr(types.ErrTryAgainLater, "network policy: %v", err)
	}
	return nil
}

// releaseAttachment tells the agent the attachment is gone; the agent also
// stops trusting it when the pod goes, so a failure here is not fatal.
func releaseAttachment(conf *NetConf, args *skel.CmdArgs) {
	if conf.AgentSocket != "" {
		_ = tellAgent(conf.AgentSocket, http.MethodDelete, api.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}, delTimeout)
	}
}
