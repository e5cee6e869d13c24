package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/weftnet/weft/handover"
	"github.com/weftnet/weft/keys"
	"github.com/weftnet/weft/mesh"
	"github.com/weftnet/weft/pq"
)

// ErrHandedOver: Run returned because a successor took the data plane
// over. The process has nothing left to do but exit when told to (in
// Kubernetes, when the DaemonSet controller deletes its pod): exiting at
// once would have the kubelet restart it, and it would take the data plane
// back.
var ErrHandedOver = errors.New("handed the data plane over to a successor")

// offerState is what the old agent offers with its descriptors (handover
// versions 1 and 2): the device's peers (mesh.Device.PeerConfig), with which the
// successor's device shakes hands through the relay before it takes over.
type offerState struct {
	Peers string `json:"peers"`
}

// handoverState is what the old agent leaves when it lets go (handover
// versions 1 and 2): the rest of the data plane that lives only in the process.
// The kernel keeps the interface, addresses, routes and nftables.
type handoverState struct {
	Keys         []keys.Held       `json:"keys,omitempty"`
	NodeKeySince time.Time         `json:"node_key_since"`
	Rest         mesh.Rest         `json:"rest"`
	PathMTUs     []mesh.LearnedMTU `json:"path_mtus,omitempty"`
}

// Handover descriptor names.
const (
	fileTUN     = "tun"
	fileRelay   = "relay"
	fileHTTP    = "http"
	filePprof   = "pprof"
	filePQ      = "pq"
	fileControl = "control"
	fileCNI     = "cni"
)

// takeTimeout bounds the wait for the old agent to let go.
const takeTimeout = 10 * time.Second

// keyHoldTimeout bounds the wait for a running key exchange before an
// offer: one exchange's own bound, and a little.
const keyHoldTimeout = pq.Timeout + time.Second

// handshakeWait bounds how long a successor waits for its sessions before
// it takes over: a live peer answers within a round trip; a dead one would
// not answer the old agent either.
const handshakeWait = 2 * time.Second

// findPredecessor asks an agent running on this state directory for its
// data plane. nil (and no error): start as usual. An agent that refuses
// (it speaks another handover version) is waited out: this one starts as
// a plain restart once it has exited. One that went away in the middle
// (it died, or another successor was first) is asked again, and so is
// whoever took its place, for up to a minute.
func (a *Agent) findPredecessor(ctx context.Context) (*handover.Successor, error) {
	versions := handover.Versions
	if a.cfg.HandoverVersion != 0 {
		versions = []int{a.cfg.HandoverVersion}
	}
	var raced time.Time // when a running agent went away mid-handover
	waiting := false    // for an agent that cannot hand over to exit
	wait := func(why string, args ...any) {
		if waiting {
			return
		}
		waiting = true
		a.log.Warn(why+"; waiting for it to exit, then starting as a plain restart", args...)
		// Ready to replace it: in Kubernetes the rollout may now stop the
		// old pod (today's restart), where it would otherwise wait for
		// this one forever.
		if err := a.writeReadyFile(); err != nil {
			a.log.Warn("cannot write the ready file", "err", err)
		}
	}
	for {
		s, err := handover.Dial(ctx, a.cfg.StateDir, versions)
		var refused *handover.Refused
		switch {
		case s != nil:
			return s, nil
		case errors.As(err, &refused):
			wait("the running agent cannot hand over", "reason", refused.Reason)
		case errors.Is(err, handover.ErrGone):
			if raced.IsZero() {
				raced = time.Now()
			}
		case err != nil:
			return nil, err
		case waiting && a.portsFree():
			return nil, nil // the old agent is gone
		case !waiting && mesh.CheckPortFree(a.cfg.ListenPort) == nil:
			return nil, nil // nobody here
		case !waiting && mesh.DeviceServed(a.cfg.RunDir, a.cfg.Interface):
			wait("an agent without handover runs " + a.cfg.Interface)
		case !waiting && (raced.IsZero() || time.Since(raced) > time.Minute):
			return nil, nil // the port is another program's: the start fails on it
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// portsFree reports whether every port the agent listens on is free: an
// agent that stops lets go of them one by one.
func (a *Agent) portsFree() bool {
	if mesh.CheckPortFree(a.cfg.ListenPort) != nil {
		return false
	}
	tcp := []string{a.cfg.HTTPAddr, fmt.Sprintf(":%d", a.cfg.GossipPort)}
	if a.cfg.PQ != keys.Off {
		tcp = append(tcp, fmt.Sprintf(":%d", a.cfg.PQPort))
	}
	if a.cfg.PprofAddr != "" {
		tcp = append(tcp, a.cfg.PprofAddr)
	}
	for _, addr := range tcp {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		ln.Close()
	}
	return mesh.CheckPortFree(a.cfg.GossipPort) == nil
}

// take tells the old agent to let go and returns what it left. An old
// agent that went away first leaves nothing: the start goes on as after a
// crash, with the descriptors already received.
func (a *Agent) take(s *handover.Successor) (handoverState, error) {
	var st handoverState
	if d := a.cfg.HandoverHold; d > 0 {
		a.log.Info("holding before take (--handover-hold)", "for", d)
		time.Sleep(d)
	}
	t0 := time.Now()
	raw, err := s.Take(takeTimeout)
	if errors.Is(err, handover.ErrGone) {
		a.log.Warn("the old agent went away during the handover; starting as after a crash")
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		a.log.Warn("ignoring the old agent's state", "err", err)
		return handoverState{}, nil
	}
	a.log.Info("took the data plane over", "version", s.Version, "released_after", time.Since(t0).Round(time.Microsecond))
	return st, nil
}

// listenOr is the named listening socket the old agent handed over, or a
// new one on addr.
func listenOr(s *handover.Successor, name, addr string) (net.Listener, error) {
	if s != nil {
		if ln, err := s.Listener(name); ln != nil || err != nil {
			return ln, err
		}
	}
	return net.Listen("tcp", addr)
}

// unixListenerOr is the named Unix socket the old agent handed over, or
// nil (the caller creates it).
func unixListenerOr(s *handover.Successor, name string) (net.Listener, error) {
	if s == nil {
		return nil, nil
	}
	return s.Listener(name)
}

// offered is one socket the agent can hand over.
type offered struct {
	name string
	ln   net.Listener
}

// serveHandover answers successors on the handover socket until one takes
// over; then it hands the request to the loop, which stops, and Run lets go
// of everything before answering released.
func (a *Agent) serveHandover(ctx context.Context, l *handover.Listener, sockets []offered) {
	for {
		req, err := l.Accept()
		var refused *handover.Refused
		switch {
		case errors.Is(err, net.ErrClosed):
			return
		case errors.As(err, &refused):
			a.log.Warn("refused a handover", "reason", refused.Reason)
			continue
		case err != nil:
			a.log.Warn("handover", "err", err)
			continue
		}
		files, offer, err := a.handoverFiles(sockets)
		if err != nil {
			a.log.Error("cannot offer the data plane; the successor will wait", "err", err)
			req.Close()
			continue
		}
		a.log.Info("offered the data plane to a successor", "version", req.Version)
		if err := req.Offer(files, offer); err != nil {
			req.Close()
			a.log.Warn("the successor did not take over; going on", "err", err)
			a.endRelay()
			continue
		}
		select {
		case a.handoverReq <- req:
		case <-ctx.Done():
			req.Close()
		}
		return
	}
}

// endRelay ends a relay to a successor that did not take over; if it made
// sessions through it, the loop (the device's writer) renews every session.
func (a *Agent) endRelay() {
	if a.pq != nil {
		a.pq.Resume()
	}
	renew, after := a.dev.EndRelay()
	if !renew {
		return
	}
	time.Sleep(time.Until(after))
	a.log.Info("renewing the sessions a successor made before it gave up")
	select {
	case a.renew <- struct{}{}:
	default:
	}
}

// handoverFiles duplicates the TUN and the listening sockets, starts the
// relay the successor shakes hands through, and reads the device's peers.
func (a *Agent) handoverFiles(sockets []offered) ([]handover.File, offerState, error) {
	var out []handover.File
	fail := func(err error) ([]handover.File, offerState, error) {
		for _, f := range out {
			f.File.Close()
		}
		a.endRelay()
		return nil, offerState{}, err
	}
	// No key exchange from here until the take: the peers' preshared
	// keys stay as offered (keys.Manager.Hold).
	if a.pq != nil && !a.pq.Hold(keyHoldTimeout) {
		a.log.Warn("a key exchange still runs; offering the keys as they are", "after", keyHoldTimeout)
	}
	peers, err := a.dev.PeerConfig()
	if err != nil {
		return fail(err)
	}
	tun, err := a.dev.TUNFile()
	if err != nil {
		return fail(err)
	}
	out = append(out, handover.File{Name: fileTUN, File: tun})
	relay, err := a.dev.StartRelay()
	if err != nil {
		return fail(err)
	}
	out = append(out, handover.File{Name: fileRelay, File: relay})
	for _, s := range sockets {
		if s.ln == nil {
			continue
		}
		fl, ok := s.ln.(interface{ File() (*os.File, error) })
		if !ok {
			return fail(fmt.Errorf("the %s socket cannot be handed over", s.name))
		}
		f, err := fl.File()
		if err != nil {
			return fail(fmt.Errorf("duplicate the %s socket: %w", s.name, err))
		}
		out = append(out, handover.File{Name: s.name, File: f})
	}
	return out, offerState{Peers: peers}, nil
}

// leaveState is what the loop captures when it stops for a successor: it
// is the device's one writer, so nothing changes the device after this.
func (a *Agent) leaveState() handoverState {
	st := handoverState{PathMTUs: a.pmtu.Export()}
	if m := a.meshUp.Load(); m != nil {
		st.Rest = m.Rest()
	}
	if a.pq != nil {
		// Held since the offer (keys.Manager.Hold): they no longer change.
		st.Keys, st.NodeKeySince = a.pq.Export()
	}
	return st
}

// released answers the successor once the device let go: with the state
// the loop recorded, and the preshared keys and their ages.
func (a *Agent) released(st handoverState) {
	if err := a.handoff.Released(st); err != nil {
		a.log.Error("could not tell the successor it may go on; it starts as after a crash", "err", err)
		return
	}
	a.log.Info("handed the data plane over", "since_take", time.Since(a.handoffAt).Round(time.Microsecond), "preshared_keys", len(st.Keys))
}

// succeed opens the successor's device on the handed-over TUN and relay
// with the offered peers, waits for its sessions, takes over, and makes it
// the data plane.
func (a *Agent) succeed(pred *handover.Successor, open func(tun, relay *os.File, peers string) error) (handoverState, error) {
	var offer offerState
	if err := json.Unmarshal(pred.Offered, &offer); err != nil {
		a.log.Warn("ignoring the old agent's offered peers", "err", err)
	}
	tun, relay := pred.File(fileTUN), pred.File(fileRelay)
	if tun == nil || relay == nil {
		for _, f := range []*os.File{tun, relay} {
			if f != nil {
				f.Close()
			}
		}
		return handoverState{}, errors.New("handover: the old agent offered no TUN or relay")
	}
	if err := open(tun, relay, offer.Peers); err != nil {
		return handoverState{}, err
	}
	w0 := time.Now()
	done, of := a.dev.AwaitHandshakes(handshakeWait)
	a.log.Info("sessions made through the old agent", "peers", done, "of", of, "after", time.Since(w0).Round(time.Millisecond))
	t0 := time.Now()
	left, err := a.take(pred)
	if err != nil {
		return left, err
	}
	if err := a.dev.Take(pred.Version >= 2); err != nil {
		return left, err
	}
	a.log.Info("the device runs the data plane", "since_take", time.Since(t0).Round(time.Microsecond))
	if done < of {
		// The peers that did not answer through the relay are asked again
		// directly, now, not at WireGuard's next retry.
		n, err := a.dev.RenewWaiting()
		a.log.Info("asked the peers without a session again", "peers", n, "err", err)
	}
	return left, nil
}

// markReady publishes readiness: /readyz, and --ready-file, which is this
// process's own (the DaemonSet's readiness probe reads it: during a
// handover the HTTP port answers for whichever agent accepts, so a
// successor would look ready before it took over).
func (a *Agent) markReady(ready bool) error {
	a.ready.Store(ready)
	if a.cfg.ReadyFile == "" {
		return nil
	}
	if !ready {
		if err := os.Remove(a.cfg.ReadyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	return a.writeReadyFile()
}

func (a *Agent) writeReadyFile() error {
	if a.cfg.ReadyFile == "" {
		return nil
	}
	return os.WriteFile(a.cfg.ReadyFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644)
}

// version is the release the image names (WEFT_VERSION, the Dockerfile's
// VERSION), else "dev".
func version() string {
	if v := os.Getenv("WEFT_VERSION"); v != "" && len(v) <= 64 {
		return v
	}
	return "dev"
}
