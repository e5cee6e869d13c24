package ctl

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
)

// showconf prints a wg-quick configuration the agent renders: a node's own
// (GET /v1/showconf/node/NAME) or one for an external Peer object
// (GET /v1/showconf/peer/NAME), which lists every node as a peer.
func showconf(base string, args []string, out io.Writer) error {
	if len(args) < 2 || (args[0] != "node" && args[0] != "peer") {
		return errors.New("showconf: want node NAME or peer NAME")
	}
	kind, name := args[0], args[1]
	fs := flag.NewFlagSet("showconf", flag.ContinueOnError)
	svc := fs.String("service-cidr", "", "also route the Service range through the mesh (peer configs), e.g. 10.96.0.0/12")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	q := url.Values{}
	if *svc != "" {
		p, err := netip.ParsePrefix(*svc)
		if err != nil || p != p.Masked() {
			return fmt.Errorf("--service-cidr %q: want a network CIDR", *svc)
		}
		q.Set("serviceCIDR", p.String())
	}
	u := base + "/v1/showconf/" + kind + "/" + url.PathEscape(name)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	body, err := get(u, nil)
	if err != nil {
		return err
	}
	_, err = out.Write(body)
	return err
}
