package keys

import (
	"errors"
	"net"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/internal/connlimit"
	"github.com/weftnet/weft/pq"
)

// The responding side of the pairs' key exchanges: the port's bounds and
// one exchange answered.

const (
	// The port answers anyone who reaches it, so the exchanges answered at
	// once are bounded three ways: pqMaxConns in all for the addresses of
	// accepted nodes, pqMaxStrangers in all for every other address, and
	// pqMaxPerSource for any one address. A host that is not a node cannot
	// take a node's place however many connections it opens, and a node
	// (or what runs on its address) holds at most pqMaxPerSource. Each
	// connection gets pq.FirstMessageTimeout to send its first message,
	// and costs one HMAC before it is authenticated.
	pqMaxConns     = 32
	pqMaxStrangers = 8
	pqMaxPerSource = 2
)

// Serve answers exchanges on ln until it is closed, within the bounds
// described at pqMaxConns.
func (k *Manager) Serve(ln net.Listener) {
	nodes := make(chan struct{}, pqMaxConns)
	strangers := make(chan struct{}, pqMaxStrangers)
	perSource := connlimit.New(pqMaxPerSource, 0)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		src := connlimit.Source(c)
		k.mu.Lock()
		slots := strangers
		if k.sources[src] {
			slots = nodes
		}
		k.mu.Unlock()
		full := perSource.Take(src) != ""
		if !full {
			select {
			case slots <- struct{}{}:
			default:
				perSource.Give(src)
				full = true
			}
		}
		if full {
			k.failures.WithLabelValues("busy").Inc()
			c.Close()
			continue
		}
		go func() {
			defer func() {
				perSource.Give(src)
				<-slots
			}()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(pq.FirstMessageTimeout)) // Respond extends it once m1 is in
			k.respond(c)
		}()
	}
}

func (k *Manager) respond(c net.Conn) {
	var held *pair
	var self *pq.Identity
	r := &pq.Responder{
		Self: func() *pq.Identity {
			k.mu.Lock()
			defer k.mu.Unlock()
			self = k.self
			return self
		},
		Known: func(pub wgtypes.Key) bool {
			k.mu.Lock()
			defer k.mu.Unlock()
			_, ok := k.pairs[pub]
			return ok
		},
		Busy: func(pub wgtypes.Key) bool {
			k.mu.Lock()
			p := k.pairs[pub]
			win := p != nil && p.starting && k.lower(pub)
			holding := k.held // a handover is under way (Hold)
			k.mu.Unlock()
			if p == nil || win || holding {
				return true
			}
			// Wait for an exchange of ours the peer is about to refuse.
			// Ours may connect meanwhile (it was dialling): if this end
			// wins, the peer's is refused then, not after the wait. Both
			// ends waiting for their own exchange, each held by the
			// other's wait, was a crossed exchange's deadlock until the
			// wait ran out, and both retried in step (busy backs off
			// 2 s): seen as pairs without a key for seconds.
			wait := time.NewTimer(pq.Timeout / 2)
			defer wait.Stop()
			look := time.NewTicker(crossedLook)
			defer look.Stop()
			for {
				select {
				case p.busy <- struct{}{}:
					held = p
					return false
				case <-wait.C:
					return true
				case <-look.C:
					k.mu.Lock()
					win := p.starting && k.lower(pub)
					k.mu.Unlock()
					if win {
						return true
					}
				}
			}
		},
		Install: func(pub, psk wgtypes.Key) error { return k.install(pub, self, psk, false) },
		Replays: &k.replays,
	}
	pub, _, err := r.Respond(c)
	if held != nil {
		<-held.busy
	}
	if errors.Is(err, pq.ErrUnauthenticated) {
		// Anyone can cause these: counted, logged at most every
		// refusedLogEvery, and never held against the pair it names.
		k.failures.WithLabelValues(pq.Reason(err)).Inc()
		k.mu.Lock()
		quiet := time.Since(k.refusedAt) < refusedLogEvery
		if !quiet {
			k.refusedAt = time.Now()
		}
		k.mu.Unlock()
		if !quiet {
			k.log.Info("key exchange refused (unauthenticated; further ones are counted in weft_pq_failures_total, logged at most once a minute)", "from", c.RemoteAddr().String(), "err", err)
		}
		return
	}
	k.result(pub, err, "responder")
}

// crossedLook is how often a responder waiting for this end's own exchange
// with the same peer looks whether that exchange connected (and wins).
const crossedLook = 10 * time.Millisecond

// refusedLogEvery spaces the log lines of unauthenticated exchanges.
const refusedLogEvery = time.Minute
