package agent

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// Rejection says why a node's claim was not installed.
type Rejection struct {
	Name   string
	Reason string // metric label: self, duplicate-key, cidr-overlap, invalid
	Detail string
}

// Accept decides which claims become peers. It is pure: given this node, the
// names accepted last time and the current claims, it returns the peers to
// install and the claims refused. Peers accepted before keep precedence, so a
// newcomer can never take a range from a node already in the mesh; among
// newcomers the name decides, so every node reaches the same answer.
func Accept(self NodeInfo, previous []string, claims map[string]NodeInfo) ([]NodeInfo, []Rejection) {
	order := make([]string, 0, len(claims))
	seen := make(map[string]bool, len(claims))
	prev := slices.Clone(previous)
	slices.Sort(prev)
	for _, n := range prev {
		if _, ok := claims[n]; ok && !seen[n] {
			order = append(order, n)
			seen[n] = true
		}
	}
	var rest []string
	for n := range claims {
		if !seen[n] {
			rest = append(rest, n)
		}
	}
	slices.Sort(rest)
	order = append(order, rest...)

	var accepted []NodeInfo
	var rejected []Rejection
	owner := map[string]string{} // public key -> name
	taken := []ownedPrefix{}
	for _, p := range self.PodCIDRs {
		taken = append(taken, ownedPrefix{p, self.Name})
	}
	owner[self.PublicKey.String()] = self.Name
	for _, name := range order {
		c := claims[name]
		switch {
		case name == self.Name:
			rejected = append(rejected, Rejection{name, "self", "a peer uses this node's own name"})
			continue
		case owner[c.PublicKey.String()] != "":
			rejected = append(rejected, Rejection{name, "duplicate-key", fmt.Sprintf("public key already belongs to %s", owner[c.PublicKey.String()])})
			continue
		}
		if o, p, ok := overlapsAny(c.PodCIDRs, taken); ok {
			rejected = append(rejected, Rejection{name, "cidr-overlap", fmt.Sprintf("pod CIDR %s overlaps %s of %s", p, o.prefix, o.name)})
			continue
		}
		owner[c.PublicKey.String()] = name
		for _, p := range c.PodCIDRs {
			taken = append(taken, ownedPrefix{p, name})
		}
		accepted = append(accepted, c)
	}
	slices.SortFunc(accepted, func(a, b NodeInfo) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return accepted, rejected
}

type ownedPrefix struct {
	prefix netip.Prefix
	name   string
}

func overlapsAny(ps []netip.Prefix, taken []ownedPrefix) (ownedPrefix, netip.Prefix, bool) {
	for _, p := range ps {
		for _, t := range taken {
			if p.Overlaps(t.prefix) {
				return t, p, true
			}
		}
	}
	return ownedPrefix{}, netip.Prefix{}, false
}

// Registry holds the claims sources have made and the view accepted from
// them. Sources call Set and Delete; the agent reads Peers after Changed fires.
type Registry struct {
	self NodeInfo

	mu       sync.Mutex
	claims   map[string]NodeInfo
	source   map[string]string
	accepted []NodeInfo
	rejected map[string]Rejection // last rejection per name, to log each once

	changed  chan struct{}
	onReject func(Rejection)
}

// NewRegistry returns a registry for the node self. onReject is called once
// for each new rejection (for logging and metrics).
func NewRegistry(self NodeInfo, onReject func(Rejection)) *Registry {
	return &Registry{
		self:     self,
		claims:   map[string]NodeInfo{},
		source:   map[string]string{},
		rejected: map[string]Rejection{},
		changed:  make(chan struct{}, 1),
		onReject: onReject,
	}
}

// Changed fires (coalesced) whenever the accepted view may have changed.
func (r *Registry) Changed() <-chan struct{} { return r.changed }

// Self is this node.
func (r *Registry) Self() NodeInfo { return r.self }

// Set records a claim from source (gossip, cache).
func (r *Registry) Set(source string, n NodeInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.claims[n.Name] = n
	r.source[n.Name] = source
	if r.rejected[n.Name].Reason == "invalid" {
		delete(r.rejected, n.Name)
	}
	r.recompute()
}

// Delete forgets the claim for name.
func (r *Registry) Delete(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.claims[name]; !ok {
		return
	}
	delete(r.claims, name)
	delete(r.source, name)
	r.recompute()
}

// DeleteFrom forgets name's claim only if it still comes from source.
func (r *Registry) DeleteFrom(source, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.source[name] != source {
		return
	}
	delete(r.claims, name)
	delete(r.source, name)
	r.recompute()
}

// Reject records a claim that failed validation before reaching the registry.
func (r *Registry) Reject(name, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.claims[name]; ok {
		delete(r.claims, name)
		delete(r.source, name)
		r.recompute()
	}
	r.noteRejection(Rejection{Name: name, Reason: "invalid", Detail: detail})
}

// Peers returns the accepted peers, sorted by name, and the source of each.
func (r *Registry) Peers() ([]NodeInfo, map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	src := make(map[string]string, len(r.accepted))
	for _, n := range r.accepted {
		src[n.Name] = r.source[n.Name]
	}
	return slices.Clone(r.accepted), src
}

func (r *Registry) recompute() {
	prev := make([]string, 0, len(r.accepted))
	for _, n := range r.accepted {
		prev = append(prev, n.Name)
	}
	accepted, rejected := Accept(r.self, prev, r.claims)
	r.accepted = accepted
	current := map[string]bool{}
	for _, rej := range rejected {
		current[rej.Name] = true
		r.noteRejection(rej)
	}
	for name, rej := range r.rejected {
		if !current[name] && rej.Reason != "invalid" {
			delete(r.rejected, name)
		}
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *Registry) noteRejection(rej Rejection) {
	if r.rejected[rej.Name] == rej {
		return
	}
	r.rejected[rej.Name] = rej
	if r.onReject != nil {
		r.onReject(rej)
	}
}
