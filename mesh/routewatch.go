package mesh

import (
	"context"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route drift: a weft route someone else deleted or changed is written
// again by the next Apply. Apply learns of it from the kernel's
// notifications (WatchRoutes) rather than by reading every route on every
// resync pass: at 5000 peers a listing is 5000 routes to parse (and 13 MB
// of garbage), most of an idle agent's pass. The kernel sends no
// notification for the IPv4 routes it drops with their link (set down,
// or gone): a change of a link weft routes through makes the cache stale
// too, and a listing every routeBackstop stays as the backstop.

// WatchRoutes follows the kernel's route and link notifications until ctx
// ends. The channel delivers (coalesced) when a weft route changed outside
// Apply: the caller runs Apply, which reads the routes again. Notifications
// lost (a full socket buffer) count as a change, and the watch starts again.
func (m *Mesh) WatchRoutes(ctx context.Context) (<-chan struct{}, error) {
	routes, links, stop, err := subscribe(ctx)
	if err != nil {
		return nil, err
	}
	m.setWatched(true)
	drift := make(chan struct{}, 1)
	go func() {
		defer func() {
			if stop != nil {
				stop()
			}
			m.setWatched(false)
		}()
		for {
			var why []any // a drift, as the log tells it
			lost := false // a subscription ended: notifications were lost
			select {
			case <-ctx.Done():
				return
			case u, ok := <-routes:
				switch {
				case !ok:
					lost = true
				case m.routeMoved(u):
					why = []any{"cause", "route", "dst", u.Dst.String(), "protocol", u.Protocol.String(), "deleted", u.Type == unix.RTM_DELROUTE}
				}
			case u, ok := <-links:
				switch {
				case !ok:
					lost = true
				case m.linkMoved(u):
					why = []any{"cause", "link", "link", u.Attrs().Name}
				}
			}
			if lost {
				why = []any{"cause", "notifications lost"}
				stop()
				if routes, links, stop = m.resubscribe(ctx); stop == nil {
					return
				}
			}
			if why == nil || ctx.Err() != nil { // at the end the subscriptions close: no drift
				continue
			}
			m.dev.logger.Info("weft's routes changed outside weft; reading them again", why...)
			m.mu.Lock()
			m.routes.stale()
			m.mu.Unlock()
			select {
			case drift <- struct{}{}:
			default:
			}
		}
	}()
	return drift, nil
}

// watchBuffer is the notification sockets' receive buffer: the routes of a
// few hundred new peers in one pass (the kernel caps it at rmem_max); past
// it the watch starts again and Apply lists the routes.
const watchBuffer = 1 << 20

// subscribe opens the route and link notifications; stop closes both.
func subscribe(ctx context.Context) (routes chan netlink.RouteUpdate, links chan netlink.LinkUpdate, stop func(), err error) {
	sctx, cancel := context.WithCancel(ctx)
	routes = make(chan netlink.RouteUpdate, 64)
	links = make(chan netlink.LinkUpdate, 16)
	lost := func(error) {} // after a receive error the channel closes: that is the signal
	if err := netlink.RouteSubscribeWithOptions(routes, sctx.Done(), netlink.RouteSubscribeOptions{ErrorCallback: lost, ReceiveBufferSize: watchBuffer}); err != nil {
		cancel()
		return nil, nil, nil, err
	}
	if err := netlink.LinkSubscribeWithOptions(links, sctx.Done(), netlink.LinkSubscribeOptions{ErrorCallback: lost, ReceiveBufferSize: watchBuffer}); err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return routes, links, cancel, nil
}

// resubscribe opens the notifications again after they ended, retrying
// every second (meanwhile the listing every routeRelist finds drift: the
// cache is not watched); a nil stop: ctx ended.
func (m *Mesh) resubscribe(ctx context.Context) (chan netlink.RouteUpdate, chan netlink.LinkUpdate, func()) {
	for first := true; ; first = false {
		routes, links, stop, err := subscribe(ctx)
		if err == nil {
			m.setWatched(true)
			return routes, links, stop
		}
		if first {
			m.dev.logger.Warn("cannot follow route changes; retrying", "err", err)
			m.setWatched(false)
		}
		select {
		case <-ctx.Done():
			return nil, nil, nil
		case <-time.After(time.Second):
		}
	}
}

// setWatched says whether notifications tell the route cache of changes
// (the listing is then only the backstop).
func (m *Mesh) setWatched(w bool) {
	m.mu.Lock()
	m.routes.watched = w
	m.mu.Unlock()
}

// routeMoved reports whether a route notification is a change to weft's
// routes that Apply did not make: one it holds deleted or replaced, or a
// route with weft's protocol it does not know. Apply updates the cache
// under mu before a notification of its own write is looked at here, so
// its own writes match.
func (m *Mesh) routeMoved(u netlink.RouteUpdate) bool {
	if u.Dst == nil {
		return false
	}
	dst := prefixOf(*u.Dst)
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &m.routes
	if c.at.IsZero() {
		return false // read again before the next diff anyway
	}
	have, held := c.have[dst]
	ref := c.refs[dst]
	switch u.Type {
	case unix.RTM_DELROUTE:
		return held && ref.link == u.LinkIndex && sameTable(ref.table, u.Table)
	case unix.RTM_NEWROUTE:
		if u.Protocol != RouteProtocol {
			// Another owner's route for a weft destination in the
			// same table replaced weft's.
			return held && sameTable(ref.table, u.Table) && u.NlFlags&unix.NLM_F_REPLACE != 0
		}
		rt, kref, ok := fromKernel(u.Route, c.link)
		return ok && (!held || rt != have || kref.link != ref.link)
	}
	return false
}

// sameTable compares route tables; 0 (a route as Apply wrote it) is main.
func sameTable(a, b int) bool {
	main := func(t int) int {
		if t == 0 {
			return unix.RT_TABLE_MAIN
		}
		return t
	}
	return main(a) == main(b)
}

// linkMoved reports whether a link notification is for a link weft's
// routes go through (the tunnel, or the underlay of a direct route):
// the kernel drops IPv4 routes with their link without telling.
func (m *Mesh) linkMoved(u netlink.LinkUpdate) bool {
	idx := int(u.Index)
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &m.routes
	if c.at.IsZero() {
		return false
	}
	if idx == c.link {
		return true
	}
	for _, r := range c.refs {
		if r.link == idx {
			return true
		}
	}
	return false
}
