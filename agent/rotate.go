package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/internal/httpserve"
	"github.com/weftnet/weft/keys"
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
	if err := a.pq.Rekeyed(k); err != nil {
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
		a.announceSelf = time.After(announceAfterNode) // the loop gossips it
	}
	a.log.Info("node key rotated", "old_public_key", old.String(), "public_key", a.self.PublicKey.String())
	return nil
}

// announceAfterNode is how long after annotating its Node with a new key a
// node gossips the key (Kubernetes mode): its peers' Node informers have
// it first.
const announceAfterNode = 2 * time.Second

// rotateEvery is the least time between two rotations asked for on the
// control socket: each ends every session and every preshared key.
const rotateEvery = 30 * time.Second

// serveRotateKey asks the loop to rotate the node key. It is served only on
// the root-only control socket (serveControl), at most once per rotateEvery.
func (a *Agent) serveRotateKey(w http.ResponseWriter, r *http.Request) {
	a.rotateMu.Lock()
	wait := rotateEvery - time.Since(a.rotateLast)
	if !a.rotateLast.IsZero() && wait > 0 {
		a.rotateMu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		http.Error(w, fmt.Sprintf("the node key was rotated less than %v ago; try again in %v", rotateEvery, wait.Round(time.Second)), http.StatusTooManyRequests)
		return
	}
	prev := a.rotateLast
	a.rotateLast = time.Now()
	a.rotateMu.Unlock()
	notQueued := func() { // nothing happened: the next request may try at once
		a.rotateMu.Lock()
		a.rotateLast = prev
		a.rotateMu.Unlock()
	}
	done := make(chan error, 1)
	select {
	case a.rotateReq <- done:
	case <-time.After(10 * time.Second):
		notQueued()
		http.Error(w, "agent busy; try again", http.StatusServiceUnavailable)
		return
	case <-r.Context().Done():
		notQueued()
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

// serveControl serves the requests that change the node on a Unix socket
// only root can reach (the state directory is 0700, the socket 0600).
func (a *Agent) serveControl(ln net.Listener) func() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.RotateKeyPath, a.serveRotateKey)
	srv := httpserve.NewServer(mux)
	go httpserve.Serve(srv, ln, a.log, "control socket")
	return func() { srv.Close() }
}

// pqPort is the key exchange's port, 0 when it is off.
func (a *Agent) pqPort() int {
	if a.cfg.PQ == keys.Off {
		return 0
	}
	return a.cfg.PQPort
}
