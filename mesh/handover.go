package mesh

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The device's side of a handover (package handover): a successor's
// device takes over (Take), a running one lends its socket through the
// relay (StartRelay, EndRelay, Renew), lets go (Release) and gives what a
// successor starts from (TUNFile, PeerConfig).

// Take makes a successor's device the data plane, once the old agent has
// let go (package handover): the device binds the WireGuard port, reads
// the TUN and serves UAPI. Its sessions, made through the relay, carry on.
// With share (handover version 2) the old agent still holds the port: the
// device binds beside it (SO_REUSEPORT, reuseport.go), reads both its own
// socket and the relay, and says so on the relay; the old agent then
// closes its socket and the relay, so the port is never unbound. Without
// (version 1) the old agent closed its socket at released.
func (d *Device) Take(share bool) error {
	if !d.succ {
		return nil
	}
	d.succ = false
	r := d.bind.in.Load()
	if share && r != nil {
		d.bind.bound.Store(true)
		if err := d.dev.BindUpdate(); err != nil {
			// The old agent's socket does not share: it closes when its
			// relay does, then the port is free.
			d.logger.Warn("cannot bind the WireGuard port beside the old agent; binding it once it lets go", "err", err)
			d.bind.bound.Store(false)
			share = false
		}
	}
	if !share {
		if r := d.bind.in.Swap(nil); r != nil {
			r.close()
		}
		if err := d.bindPort(); err != nil {
			return fmt.Errorf("bind the WireGuard port: %w", err)
		}
	}
	d.gate.Open()
	if share {
		if err := r.sayBound(); err != nil {
			d.logger.Warn("cannot tell the old agent the port is bound", "err", err)
		}
		go d.endShare(r)
	}
	if err := claimSocket(d.sock); err != nil {
		return err
	}
	return d.serve()
}

// bindPort binds the device's port, retrying for up to shareTimeout and a
// second while the old agent still lets go of it (a failed bind leaves
// wireguard-go on no port: the port is set again each time).
func (d *Device) bindPort() error {
	port := d.port
	deadline := time.Now().Add(shareTimeout + time.Second)
	for {
		err := d.dev.IpcSet(fmt.Sprintf("listen_port=%d\n", port))
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

// endShare forgets the relay once the old agent has closed it (it closes
// its socket first), or after shareTimeout.
func (d *Device) endShare(r *inRelay) {
	for deadline := time.Now().Add(shareTimeout); !r.ended.Load() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	d.bind.in.CompareAndSwap(r, nil)
	r.close()
}

// shareTimeout bounds the time two agents share the port.
const shareTimeout = 2 * time.Second

// StartRelay lets a successor shake hands through this device (relay.go);
// the file is the successor's end, to hand over.
func (d *Device) StartRelay() (*os.File, error) {
	c, theirs, err := relayPair()
	if err != nil {
		return nil, err
	}
	r := &outRelay{c: c, indices: map[uint32]bool{}, bound: make(chan struct{}), send: func(p []byte, ep netip.AddrPort) error {
		e, err := d.bind.Bind.ParseEndpoint(ep.String())
		if err != nil {
			return err
		}
		return d.bind.Bind.Send([][]byte{p}, e)
	}}
	if old := d.bind.out.Swap(r); old != nil {
		old.close()
	}
	go r.serve()
	return theirs, nil
}

// Renew re-creates every peer as it is, so each starts a new session with
// this device: after a successor that shook hands through the relay gave
// up, its peers would otherwise send under the successor's sessions until
// their next rekey. Only the agent's loop calls it (the device's writer).
func (d *Device) Renew() error {
	_, err := d.renew(func(peerState) bool { return true })
	return err
}

// RenewWaiting re-creates the peers with a persistent keepalive that have
// no session yet, so each sends a new initiation now rather than at
// WireGuard's 5 s retry (a peer drops an initiation that follows another
// of the same key within 20 ms, or one was lost); it reports how many.
// Only the device's one writer calls it.
func (d *Device) RenewWaiting() (int, error) {
	return d.renew(func(p peerState) bool { return p.keepalive && !p.shaken })
}

// peerState is one peer as the device reports it.
type peerState struct {
	pub, config       string // the public key; the rest of PeerConfig's block
	keepalive, shaken bool
}

// peers reads the device's peers.
func (d *Device) peers() ([]peerState, error) {
	all, err := d.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("read device: %w", err)
	}
	var out []peerState
	var cfg strings.Builder
	for line := range strings.Lines(all) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		if k == "public_key" {
			if n := len(out); n > 0 {
				out[n-1].config = cfg.String()
			}
			cfg.Reset()
			out = append(out, peerState{pub: v})
			continue
		}
		if len(out) == 0 {
			continue // the device's own lines
		}
		p := &out[len(out)-1]
		switch k {
		case "preshared_key", "endpoint", "allowed_ip":
			cfg.WriteString(line)
		case "persistent_keepalive_interval":
			cfg.WriteString(line)
			p.keepalive = v != "0"
		case "last_handshake_time_sec":
			p.shaken = v != "0"
		}
	}
	if n := len(out); n > 0 {
		out[n-1].config = cfg.String()
	}
	return out, nil
}

// renew re-creates the peers which picks, as they are.
func (d *Device) renew(which func(peerState) bool) (int, error) {
	peers, err := d.peers()
	if err != nil {
		return 0, err
	}
	var b strings.Builder
	n := 0
	for _, p := range peers {
		if which(p) {
			fmt.Fprintf(&b, "public_key=%s\nremove=true\npublic_key=%s\n%s", p.pub, p.pub, p.config)
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := d.dev.IpcSet(b.String()); err != nil {
		return 0, fmt.Errorf("renew sessions: %v", redactKey(err))
	}
	return n, nil
}

// EndRelay stops passing packets to a successor that did not take over.
// It reports whether the successor started handshakes through it: then
// peers may hold its sessions, and the caller should Renew, but not before
// renewAfter (a peer refuses an initiation that follows another of the
// same key within 20 ms as a flood, and the next try is 5 s later).
func (d *Device) EndRelay() (shookHands bool, renewAfter time.Time) {
	r := d.bind.out.Swap(nil)
	if r == nil {
		return false, time.Time{}
	}
	r.close()
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.indices) > 0, r.lastInit.Add(initiationSpacing)
}

// initiationSpacing: wireguard-go refuses an initiation less than 20 ms
// (HandshakeInitationRate) after the last one it took from that key.
const initiationSpacing = 30 * time.Millisecond

// AwaitHandshakes waits until every peer with a persistent keepalive has
// shaken hands with this device, or timeout; it reports how many did of
// how many. A successor calls it before taking over, so its sessions are
// there when it does (a dead peer only makes it wait the timeout). A peer
// that has not answered within awaitRetry is asked again (RenewWaiting):
// WireGuard itself would wait 5 s.
func (d *Device) AwaitHandshakes(timeout time.Duration) (done, of int) {
	start := time.Now()
	retried := start
	for {
		peers, err := d.peers()
		if err != nil {
			return 0, 0
		}
		done, of = 0, 0
		for _, p := range peers {
			if p.keepalive {
				of++
				if p.shaken {
					done++
				}
			}
		}
		if done == of || time.Since(start) > timeout {
			return done, of
		}
		if time.Since(retried) > awaitRetry {
			retried = time.Now()
			_, _ = d.RenewWaiting() // the next look tells
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitRetry: many round trips between nodes, and well beyond the 20 ms
// within which a peer refuses a second initiation from one key.
const awaitRetry = 300 * time.Millisecond

// Release lets go of the data plane for a successor at once, in the order
// that loses the least in flight: the device stops reading the TUN (what
// arrives there waits in its queue for the successor), sends what it had
// read (releaseDrain) and closes the UAPI socket. The TUN stays open for
// writes: packets the device decrypted just before still arrive. With
// keep (handover version 2) the WireGuard socket stays open, passing the
// successor's packets on through the relay, until the successor has bound
// the port beside it; then it closes, and the relay after it. Without,
// the socket closes now (what arrives until the successor binds is lost)
// and the relay after it. Close finishes later; wireguard-go's goroutines
// end on their own meanwhile.
func (d *Device) Release(keep bool) {
	d.released.Store(true)
	d.gate.Shut()
	time.Sleep(releaseDrain)
	if d.uapi != nil {
		d.uapi.Close()
		os.Remove(d.sock)
	}
	r := d.bind.out.Load()
	if !keep || r == nil {
		_ = d.dev.BindClose()
		d.EndRelay()
		return
	}
	released := time.Now()
	letGo := make(chan struct{})
	d.letGo.Store(&letGo)
	go func() {
		defer close(letGo)
		select {
		case <-r.bound:
		case <-time.After(shareTimeout):
		}
		told := r.said.Load() // else the successor went, or never said it
		_ = d.dev.BindClose()
		d.EndRelay()
		d.logger.Info("released the port", "after", time.Since(released).Round(time.Microsecond), "told_bound", told,
			"relayed_to_successor", r.passed.Load(), "relay_write_failed", r.lost.Load(), "sent_for_successor", r.sent.Load())
	}()
}

// releaseDrain is what a device is given to encrypt and send the packets
// it read from the TUN last: one batch through crypto and a system call,
// well under a millisecond on an idle core.
const releaseDrain = time.Millisecond

// TUNFile is a duplicate of the TUN descriptor, for a successor (package
// handover); the caller closes it.
func (d *Device) TUNFile() (*os.File, error) {
	nt := d.gate.native
	if nt == nil {
		return nil, errors.New("the tunnel is not a native TUN")
	}
	fd, err := unix.FcntlInt(nt.File().Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate the tun descriptor: %w", err)
	}
	return os.NewFile(uintptr(fd), "tun"), nil
}

// PeerConfig is the device's peers as wireguard-go's configuration
// protocol writes them (keys, preshared keys, endpoints as learned,
// keepalives, allowed IPs; no private key, no counters), for
// DeviceConfig.Peers of a successor.
func (d *Device) PeerConfig() (string, error) {
	peers, err := d.peers()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range peers {
		fmt.Fprintf(&b, "public_key=%s\n%s", p.pub, p.config)
	}
	return b.String(), nil
}
