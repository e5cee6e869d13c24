package mesh

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/api"
)

// Mesh applies a desired State to a running Device: peers through wgctrl on
// the UAPI socket, addresses and routes through netlink.
//
// The device's peers have one writer at a time: Apply and WritePeerKey
// (the agent's loop) and, with on-demand peers, the rest check and the
// waker (ondemand.go) hold mu across their read-diff-write. Everything
// else (Dormant, Peers, LastHandshake, the counters) may be read from any
// goroutine.
type Mesh struct {
	dev    *Device
	wg     *wgctrl.Client
	writes atomic.Uint64
	mu     sync.Mutex
	od     *onDemand // nil: on-demand peers off

	rest    dormancy                             // the writer's memory of keepalives
	dormant atomic.Pointer[map[wgtypes.Key]bool] // a copy of the dormant set, for readers
	onWake  atomic.Pointer[func(wgtypes.Key)]    // OnWake's

	peerWrites [writeCauses]atomic.Uint64 // by WriteCause
	counts     counters                   // the byte counters across a peer's re-creations
	routes     routeCache                 // under mu
}

// Changes counts what one Apply changed.
type Changes struct {
	PeersWritten, PeersRemoved       int
	PeersDeferred                    int // passive peers whose keepalive waits for the next Apply
	PeersAsleep                      int // peers whose keepalive was turned off in this Apply (written anew)
	PeersDormant                     int // peers whose keepalive rests (DormantAfter); not a change
	AddressesAdded, AddressesRemoved int
	RoutesAdded, RoutesRemoved       int
}

// Empty reports whether Apply changed nothing.
func (c Changes) Empty() bool { c.PeersDormant = 0; return c == Changes{} }

// New returns a Mesh for dev. wgctrl finds the device's UAPI socket in
// /var/run/wireguard (the agent's --run-dir must be that directory, or a
// bind mount of it, for wgctrl to see the device).
func New(dev *Device) (*Mesh, error) {
	c, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("open wgctrl: %w", err)
	}
	return &Mesh{dev: dev, wg: c}, nil
}

// Close writes the awake record a last time (on-demand peers; not after a
// handover: the successor's) and releases the wgctrl client.
func (m *Mesh) Close() error {
	if o := m.od; o != nil && o.cfg.Record != "" {
		if err := m.writeRecord(o); err != nil {
			m.dev.logger.Warn("cannot write the awake record", "err", err)
		}
	}
	return m.wg.Close()
}

// Dormant reports whether pub's keepalive rests (DormantAfter,
// NeverAnswered) as of the last write, or pub rests off the device
// (on-demand): not to be changed. The key manager agrees no new preshared
// key with such a peer until it wakes (a pair without one still gets its
// first). One peer a call: the key manager asks about each due pair, and
// a set of thousands built for it at every wake was garbage.
func (m *Mesh) Dormant(pub wgtypes.Key) bool {
	if p := m.dormant.Load(); p != nil && (*p)[pub] {
		return true
	}
	return m.od != nil && m.od.table.Load().rests(pub)
}

// publishDormant copies the writer's dormant set for Dormant's readers,
// and tells OnWake's function of each peer that left it.
func (m *Mesh) publishDormant() {
	out := make(map[wgtypes.Key]bool, len(m.rest.dormant))
	for k := range m.rest.dormant {
		out[k] = true
	}
	old := m.dormant.Swap(&out)
	if f := m.onWake.Load(); f != nil && old != nil {
		for k := range *old {
			if !out[k] {
				(*f)(k)
			}
		}
	}
}

// OnWake sets a function told of each peer that wakes: its keepalive back
// on (it was dormant) or back on the device (it rested, on-demand). The
// writer calls it while it writes, so it must not wait for the writer.
func (m *Mesh) OnWake(f func(wgtypes.Key)) { m.onWake.Store(&f) }

// WritePeerKey writes one peer's preshared key to the device, between two
// Applies: want is the peer as the plan now has it with its new key (Keys.Fill),
// or nil when it must be off the device (keys required, none agreed).
// fresh re-creates the peer, so its next packet starts a handshake with
// the new key at once instead of at the session's next rekey (up to two
// minutes later); the endpoint the device holds is kept for a roaming peer.
// It reports whether it wrote.
func (m *Mesh) WritePeerKey(pub wgtypes.Key, want *Peer, fresh bool) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o := m.od; o != nil {
		if _, ok := o.resting[pub]; ok {
			if want == nil {
				// Keys required and none agreed: it stays off the device
				// until the next Apply finds one (the table keeps holding
				// its packets, as a peer without a session would).
				return false, nil
			}
			o.keep(*want, time.Now()) // written with its new key when it wakes
			return false, nil
		}
	}
	a, on, err := m.peer(pub)
	if err != nil {
		return false, err
	}
	var cfgs []wgtypes.PeerConfig
	switch {
	case want == nil && !on:
		return false, nil
	case want == nil:
		cfgs = append(cfgs, wgtypes.PeerConfig{PublicKey: pub, Remove: true})
	default:
		d := *want
		ep := udpAddr(d.Endpoint)
		ka := d.Keepalive
		if m.od != nil {
			ka = m.od.keepalive(d, time.Now())
		}
		if on {
			if a.PresharedKey == d.PresharedKey && !fresh {
				return false, nil
			}
			if d.Roaming && a.Endpoint != nil {
				ep = a.Endpoint
			}
			if fresh {
				cfgs = append(cfgs, wgtypes.PeerConfig{PublicKey: pub, Remove: true})
			}
		} else if !fresh {
			ka = 0 // the other end, which re-creates its peer, shakes hands; the next Apply turns this on
		}
		cfgs = append(cfgs, peerConfig(d, ep, ka))
		if ka > 0 { // a key was just agreed: the peer answers
			m.rest.wake(pub, time.Now())
			m.publishDormant()
		}
	}
	if err := m.wg.ConfigureDevice(m.dev.name, wgtypes.Config{Peers: cfgs}); err != nil {
		return false, fmt.Errorf("set preshared key: %w", err)
	}
	switch {
	case want == nil:
		m.counts.forget(pub)
	case fresh && on:
		m.counts.carry(a)
	}
	m.writes.Add(1)
	m.peerWrites[WriteKey].Add(1)
	return true, nil
}

// LastHandshake is the device's last completed handshake with pub.
func (m *Mesh) LastHandshake(pub wgtypes.Key) (time.Time, bool) {
	p, ok, err := m.peer(pub)
	if err != nil || !ok {
		return time.Time{}, false
	}
	return p.LastHandshakeTime, !p.LastHandshakeTime.IsZero()
}

// Peers returns the device's view of its peers (handshakes, counters).
// It reads the device in this process (peerread.go); after Release, when
// the UAPI socket's name may be a successor's, through wgctrl.
func (m *Mesh) Peers() ([]wgtypes.Peer, error) {
	var peers []wgtypes.Peer
	if m.dev.released.Load() {
		d, err := m.wg.Device(m.dev.name)
		if err != nil {
			return nil, fmt.Errorf("read device %s: %w", m.dev.name, err)
		}
		peers = d.Peers
	} else {
		var r peersReader
		if err := m.dev.dev.IpcGetOperation(&r); err != nil {
			return nil, fmt.Errorf("read device %s: %w", m.dev.name, err)
		}
		if r.err != nil {
			return nil, fmt.Errorf("read device %s: %w", m.dev.name, r.err)
		}
		peers = r.peers
	}
	m.counts.adjust(peers)
	return peers, nil
}

// Apply changes the device, addresses and routes to match s, touching only
// what differs. Addresses go first so routes can use them as source.
func (m *Mesh) Apply(s State) (Changes, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ch Changes
	link, err := netlink.LinkByIndex(m.dev.LinkIndex())
	if err != nil {
		return ch, fmt.Errorf("find tunnel link: %w", err)
	}

	haveAddrs, err := listAddresses(link)
	if err != nil {
		return ch, fmt.Errorf("list addresses: %w", err)
	}
	addA, delA := api.DiffPrefixes(s.Addresses, haveAddrs)
	for _, p := range addA {
		if err := netlink.AddrReplace(link, netlinkAddr(p)); err != nil {
			return ch, fmt.Errorf("add address %s: %w", p, err)
		}
		ch.AddressesAdded++
	}

	peers, err := m.Peers()
	if err != nil {
		return ch, err
	}
	desired := s.Peers
	if m.od != nil {
		desired = m.od.shape(desired, time.Now())
	}
	cfgs, deferred := DiffPeers(m.rest.rest(desired, peers, time.Now()), peers)
	m.publishDormant()
	ch.PeersDeferred = deferred
	ch.PeersDormant = m.rest.count()
	// A peer that fell asleep is removed before it is written again (see
	// dormancy.fallen), in the same write.
	fell := m.rest.fallen()
	var removes []wgtypes.PeerConfig
	var written, removed int
	for _, c := range cfgs {
		switch {
		case c.Remove:
			removed++
		case fell[c.PublicKey]:
			removes = append(removes, wgtypes.PeerConfig{PublicKey: c.PublicKey, Remove: true})
		default:
			written++
		}
	}
	if len(cfgs) > 0 {
		if err := m.wg.ConfigureDevice(m.dev.name, wgtypes.Config{Peers: append(removes, cfgs...)}); err != nil {
			return ch, fmt.Errorf("configure peers: %w", err)
		}
		m.writes.Add(1)
		m.peerWrites[WritePlan].Add(uint64(len(removes) + len(cfgs)))
		for _, c := range cfgs {
			if c.Remove {
				m.counts.forget(c.PublicKey)
			}
		}
		if len(removes) > 0 { // re-created: the counts go on
			recreated := make(map[wgtypes.Key]bool, len(removes))
			for _, r := range removes {
				recreated[r.PublicKey] = true
			}
			for _, p := range peers {
				if recreated[p.PublicKey] {
					m.counts.carry(p)
				}
			}
		}
		ch.PeersWritten, ch.PeersRemoved, ch.PeersAsleep = written, removed, len(removes)
	}

	have, refs, err := m.routes.read(link)
	if err != nil {
		return ch, fmt.Errorf("list routes: %w", err)
	}
	// One route that cannot be written must not keep the others (or the
	// addresses after them) from being written: each failure is kept and
	// all are returned at the end.
	var errs []error
	var direct DirectPathError
	addR, delR := diffRoutes(s.Routes, have)
	for _, r := range delR {
		if err := netlink.RouteDel(refs[r.Dst.Masked()].deletion(r.Dst)); err != nil {
			m.routes.stale()
			errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
			continue
		}
		m.routes.removed(r.Dst)
		ch.RoutesRemoved++
	}
	for _, r := range addR {
		kr, err := netlinkRoute(link, r)
		if old, ok := refs[r.Dst.Masked()]; err == nil && ok && old.link != kr.LinkIndex {
			// Moving between the tunnel and the underlay: replace matches
			// by (dst, table), but say the old one goes first.
			if err = netlink.RouteDel(old.deletion(r.Dst)); err == nil {
				m.routes.removed(r.Dst)
			}
		}
		if err == nil {
			err = netlink.RouteReplace(kr)
		}
		switch {
		case err == nil:
			m.routes.wrote(r, kr)
			ch.RoutesAdded++
		case r.Via.IsValid():
			m.routes.stale()
			direct.Failed = append(direct.Failed, DirectFailure{Dst: r.Dst, Via: r.Via, Err: err})
		default:
			m.routes.stale()
			errs = append(errs, fmt.Errorf("add route %s: %w", r.Dst, err))
		}
	}

	for _, p := range delA {
		if err := netlink.AddrDel(link, netlinkAddr(p)); err != nil {
			errs = append(errs, fmt.Errorf("remove address %s: %w", p, err))
			continue
		}
		ch.AddressesRemoved++
		// The kernel drops the routes that had it as their source:
		// the next pass reads what is left.
		m.routes.stale()
	}
	if len(direct.Failed) > 0 {
		errs = append(errs, &direct)
	}
	return ch, errors.Join(errs...)
}

// DirectPathError is Apply's report of the direct routes it could not
// write (a next hop the underlay does not reach, such as a node on another
// subnet that claims a shared location): everything else was applied. The
// caller sends those peers through the tunnel instead.
type DirectPathError struct {
	Failed []DirectFailure
}

// DirectFailure is one direct route that could not be written.
type DirectFailure struct {
	Dst netip.Prefix
	Via netip.Addr
	Err error
}

func (e *DirectPathError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		parts[i] = fmt.Sprintf("%s via %s: %v", f.Dst, f.Via, f.Err)
	}
	return "direct routes not written: " + strings.Join(parts, "; ")
}
