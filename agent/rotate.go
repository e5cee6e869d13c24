package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/mesh"
)

// rotateKey gives this node a new WireGuard key (run by the loop). The key
// is stored first, so a crash from here on restarts with it; then the
// device takes it (ending its sessions), and the node announces it: its
// Node annotation (Kubernetes) or gossip (standalone). Peers switch when
// they learn it: until then the node's handshakes are refused. Every
// pair's preshared key was bound to the old key: each is agreed again, and
// the first agreement with a peer re-creates it, which ends the pause.
func (a *Agent) rotateKey() error {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(a.cfg.StateDir, mesh.PrivateKeyFile), []byte(k.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("store new key: %w", err)
	}
	if err := a.dev.SetPrivateKey(k); err != nil {
		return err
	}
	old := a.self.PublicKey
	if err := a.pq.rekeyed(k); err != nil {
		return err
	}
	a.locMu.Lock()
	a.self.PublicKey = k.PublicKey()
	a.locMu.Unlock()
	a.reg.SetSelf(a.self)
	if a.kube == nil {
		if err := a.gossip.Announce(a.self); err != nil {
			a.log.Warn("cannot gossip the new key", "err", err)
		}
	} else {
		// The Node is the authority: annotate now, gossip a little later,
		// so that peers do not hear a key from gossip that their Node
		// informer has not yet seen (they would refuse it as a
		// contradiction).
		a.annotated = false
		a.publish(context.Background())
		time.AfterFunc(2*time.Second, func() {
			if err := a.gossip.Announce(a.selfNow()); err != nil {
				a.log.Warn("cannot gossip the new key; the Node annotation carries it", "err", err)
			}
		})
	}
	a.log.Info("node key rotated", "old_public_key", old.String(), "public_key", a.self.PublicKey.String())
	return nil
}

// serveRotateKey asks the loop to rotate the node key: only from this host
// (weftctl on the node, or in the agent's pod), never from a pod.
func (a *Agent) serveRotateKey(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if ip, err := netip.ParseAddr(host); err != nil || !ip.Unmap().IsLoopback() {
		http.Error(w, "rotate-key is accepted only from this host's loopback", http.StatusForbidden)
		return
	}
	done := make(chan error, 1)
	select {
	case a.rotateReq <- done:
	case <-time.After(10 * time.Second):
		http.Error(w, "agent busy; try again", http.StatusServiceUnavailable)
		return
	case <-r.Context().Done():
		return
	}
	if err := <-done; err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	a.locMu.Lock()
	pub := a.self.PublicKey
	a.locMu.Unlock()
	fmt.Fprintf(w, "%s\n", pub)
}

// pqPort is the key exchange's port, 0 when it is off.
func (a *Agent) pqPort() int {
	if a.cfg.PQ == PQOff {
		return 0
	}
	return a.cfg.PQPort
}
