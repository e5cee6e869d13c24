package httpapi

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/peer"
	"github.com/weftnet/weft/plan"
)

// serveShowconf renders a wg-quick configuration from this agent's view of
// the mesh: GET /v1/showconf/peer/NAME for a Peer object (every node a
// [Peer] with its pod CIDRs; ?serviceCIDR= routes the Service range through
// this node), GET /v1/showconf/node/NAME for a node. Private keys never
// leave a node: the [Interface] names the key to put there.
func (a *API) serveShowconf(w http.ResponseWriter, r *http.Request) {
	kind, name := r.PathValue("kind"), r.PathValue("name")
	var svc netip.Prefix
	if s := r.URL.Query().Get("serviceCIDR"); s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil || p != p.Masked() {
			http.Error(w, "serviceCIDR: want a network CIDR", http.StatusBadRequest)
			return
		}
		svc = p
	}
	m := a.view.Mesh()
	nodes := append([]peer.NodeInfo{m.Self}, m.Nodes...)
	ext := m.Externals
	var b strings.Builder
	switch kind {
	case "peer":
		var e *peer.External
		for i := range ext {
			if ext[i].Name == name {
				e = &ext[i]
			}
		}
		if e == nil {
			http.Error(w, fmt.Sprintf("no accepted Peer object %q on this node (weftctl status lists them)", name), http.StatusNotFound)
			return
		}
		fmt.Fprintf(&b, "# wg-quick configuration for the weft Peer %q, from %s's view of the mesh.\n", name, m.Self.Name)
		fmt.Fprintf(&b, "[Interface]\nPrivateKey = <the private key whose public key is %s>\n", e.PublicKey)
		fmt.Fprintf(&b, "Address = %s\n", strings.Join(api.PrefixStrings(e.AllowedIPs), ", "))
		for _, n := range nodes {
			allowed := api.PrefixStrings(n.PodCIDRs)
			if svc.IsValid() && n.Name == m.Self.Name {
				allowed = append(allowed, svc.String())
			}
			fmt.Fprintf(&b, "\n[Peer]\n# node %s\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = %s\nPersistentKeepalive = %d\n",
				n.Name, n.PublicKey, n.Endpoint, strings.Join(allowed, ", "), int(plan.Keepalive.Seconds()))
		}
	case "node":
		var self *peer.NodeInfo
		for i := range nodes {
			if nodes[i].Name == name {
				self = &nodes[i]
			}
		}
		if self == nil {
			http.Error(w, fmt.Sprintf("no node %q in this agent's mesh", name), http.StatusNotFound)
			return
		}
		var others []peer.NodeInfo
		for _, n := range nodes {
			if n.Name != name {
				others = append(others, n)
			}
		}
		pl := plan.Plan(*self, others, plan.Options{Externals: ext})
		fmt.Fprintf(&b, "# wg-quick-style configuration of node %s, from %s's view of the mesh (weft-agent applies it itself).\n", name, m.Self.Name)
		fmt.Fprintf(&b, "[Interface]\nPrivateKey = <the private key of node %s: %s>\nListenPort = %d\n", name, api.PrivateKeyHint, self.Endpoint.Port())
		fmt.Fprintf(&b, "Address = %s\n", strings.Join(api.PrefixStrings(pl.Addresses), ", "))
		for _, p := range pl.Peers {
			fmt.Fprintf(&b, "\n[Peer]\n# %s\nPublicKey = %s\n", p.Name, p.PublicKey)
			if p.Endpoint.IsValid() {
				fmt.Fprintf(&b, "Endpoint = %s\n", p.Endpoint)
			}
			fmt.Fprintf(&b, "AllowedIPs = %s\n", strings.Join(api.PrefixStrings(p.AllowedIPs), ", "))
			if p.Keepalive > 0 {
				fmt.Fprintf(&b, "PersistentKeepalive = %d\n", int(p.Keepalive.Seconds()))
			}
		}
		for _, rt := range pl.Routes {
			if rt.Via.IsValid() {
				fmt.Fprintf(&b, "# direct path: %s via %s on the underlay (no tunnel)\n", rt.Dst, rt.Via)
			}
		}
	default:
		http.Error(w, "want /v1/showconf/peer/NAME or /v1/showconf/node/NAME", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(b.String()))
}
