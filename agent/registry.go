package agent

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Claim sources, as shown in /v1/peers.
const (
	SourceKubernetes  = "kubernetes"         // a Node object (authority in Kubernetes mode)
	SourceGossip      = "gossip"             // memberlist (authority in standalone mode)
	SourceProvisional = "gossip-provisional" // gossip while the API server is unreachable
	SourceCache       = "cache"              // the last accepted peers, restored after a restart
)

// Rejection reasons, the label of weft_peer_rejections_total.
const (
	ReasonSelf          = "self"
	ReasonDuplicateKey  = "duplicate-key"
	ReasonCIDROverlap   = "cidr-overlap"
	ReasonInvalid       = "invalid"
	ReasonContradiction = "gossip-contradicts-node"
	ReasonNotANode      = "not-a-node"
)

var rejectionReasons = []string{ReasonSelf, ReasonDuplicateKey, ReasonCIDROverlap, ReasonInvalid, ReasonContradiction, ReasonNotANode}

// Rejection says why a node's claim was not installed.
type Rejection struct {
	Name   string
	Reason string
	Detail string
}

// Claim is what one source says about a node.
type Claim struct {
	NodeInfo
	Source string
}

// Sources is everything the registry has heard, by source.
type Sources struct {
	KubeMode bool
	APIUp    bool // Kubernetes mode: the API server answers and the Node list is synced
	Kube     map[string]NodeInfo
	Gossip   map[string]NodeInfo
	Cache    map[string]NodeInfo
}

// Merge applies the trust rules between sources (docs/design.md). It is pure.
//
// Standalone: gossip is the authority; cached peers stand in until gossip
// confirms or the agent drops them.
//
// Kubernetes: the Node object is the authority for name, key and pod CIDRs.
// Gossip may only move a Node's endpoint (roaming) and only when it agrees on
// key and CIDRs; a contradicting claim is refused. A gossip-only node is
// refused while the API answers, and accepted provisionally while it does not.
// Cached peers stand in only while the API has not answered.
func Merge(s Sources) (map[string]Claim, []Rejection) {
	claims := map[string]Claim{}
	var rej []Rejection
	if !s.KubeMode {
		for n, c := range s.Cache {
			claims[n] = Claim{c, SourceCache}
		}
		for n, g := range s.Gossip {
			claims[n] = Claim{g, SourceGossip}
		}
		return claims, rej
	}
	for n, k := range s.Kube {
		if g, ok := s.Gossip[n]; ok {
			if agrees(k, g) {
				k.Endpoint, k.GossipAddr = g.Endpoint, g.GossipAddr
			} else {
				rej = append(rej, Rejection{n, ReasonContradiction, fmt.Sprintf("gossip says key %s and pod CIDRs %v; the Node says %s and %v",
					g.PublicKey, g.PodCIDRs, k.PublicKey, k.PodCIDRs)})
			}
		}
		claims[n] = Claim{k, SourceKubernetes}
	}
	if s.APIUp {
		for n := range s.Gossip {
			if _, ok := s.Kube[n]; !ok {
				rej = append(rej, Rejection{n, ReasonNotANode, "announced by gossip but there is no such Node"})
			}
		}
		return claims, rej
	}
	for n, c := range s.Cache {
		if _, ok := claims[n]; !ok {
			if g, ok := s.Gossip[n]; ok && agrees(c, g) {
				c.Endpoint, c.GossipAddr = g.Endpoint, g.GossipAddr
			}
			claims[n] = Claim{c, SourceCache}
		}
	}
	for n, g := range s.Gossip {
		if _, ok := claims[n]; !ok {
			claims[n] = Claim{g, SourceProvisional}
		}
	}
	return claims, rej
}

func agrees(a, b NodeInfo) bool {
	return a.PublicKey == b.PublicKey && slices.Equal(sortedCIDRs(a.PodCIDRs), sortedCIDRs(b.PodCIDRs))
}

func sortedCIDRs(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// rank orders claims for Accept: Node objects first, provisional gossip last.
func rank(source string) int {
	switch source {
	case SourceKubernetes:
		return 0
	case SourceProvisional:
		return 2
	}
	return 1
}

// Accept decides which claims become peers. It is pure: given this node, the
// names accepted last time and the current claims, it returns the peers to
// install and the claims refused. Claims are weighed by source (Node objects,
// then gossip and cache, then provisional gossip), then peers accepted before
// keep precedence, so a newcomer can never take a range from a node already
// in the mesh; last the name decides, so every node reaches the same answer.
func Accept(self NodeInfo, previous []string, claims map[string]Claim) ([]Claim, []Rejection) {
	prev := map[string]bool{}
	for _, n := range previous {
		prev[n] = true
	}
	order := make([]string, 0, len(claims))
	for n := range claims {
		order = append(order, n)
	}
	slices.SortFunc(order, func(a, b string) int {
		if ra, rb := rank(claims[a].Source), rank(claims[b].Source); ra != rb {
			return ra - rb
		}
		if prev[a] != prev[b] {
			if prev[a] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})

	var accepted []Claim
	var rejected []Rejection
	owner := map[string]string{self.PublicKey.String(): self.Name}
	var taken []ownedPrefix
	for _, p := range self.PodCIDRs {
		taken = append(taken, ownedPrefix{p, self.Name})
	}
	for _, name := range order {
		c := claims[name]
		switch {
		case name == self.Name:
			rejected = append(rejected, Rejection{name, ReasonSelf, "a peer uses this node's own name"})
			continue
		case owner[c.PublicKey.String()] != "":
			rejected = append(rejected, Rejection{name, ReasonDuplicateKey, fmt.Sprintf("public key already belongs to %s", owner[c.PublicKey.String()])})
			continue
		}
		if o, p, ok := overlapsAny(c.PodCIDRs, taken); ok {
			rejected = append(rejected, Rejection{name, ReasonCIDROverlap, fmt.Sprintf("pod CIDR %s overlaps %s of %s", p, o.prefix, o.name)})
			continue
		}
		owner[c.PublicKey.String()] = name
		for _, p := range c.PodCIDRs {
			taken = append(taken, ownedPrefix{p, name})
		}
		accepted = append(accepted, c)
	}
	slices.SortFunc(accepted, func(a, b Claim) int { return strings.Compare(a.Name, b.Name) })
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

// Registry holds what every source has said and the view accepted from it.
// Sources call its setters; the agent reads Peers after Changed fires.
type Registry struct {
	self NodeInfo

	mu       sync.Mutex
	src      Sources
	accepted []Claim
	rejected map[string]Rejection // by name and reason: each reported once
	invalid  map[string]string    // name -> detail of its last invalid claim

	changed  chan struct{}
	onReject func(Rejection)
}

// NewRegistry returns a registry for the node self. onReject is called once
// for each new rejection (for logging, metrics and Events).
func NewRegistry(self NodeInfo, kubeMode bool, onReject func(Rejection)) *Registry {
	return &Registry{
		self: self,
		src: Sources{KubeMode: kubeMode, Kube: map[string]NodeInfo{},
			Gossip: map[string]NodeInfo{}, Cache: map[string]NodeInfo{}},
		rejected: map[string]Rejection{},
		invalid:  map[string]string{},
		changed:  make(chan struct{}, 1),
		onReject: onReject,
	}
}

// Changed fires (coalesced) whenever the accepted view may have changed.
func (r *Registry) Changed() <-chan struct{} { return r.changed }

func (r *Registry) update(fn func(s *Sources)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(&r.src)
	r.recompute()
}

func (r *Registry) sourceMap(source string) map[string]NodeInfo {
	switch source {
	case SourceKubernetes:
		return r.src.Kube
	case SourceCache:
		return r.src.Cache
	}
	return r.src.Gossip
}

// Set records what source says about n.Name.
func (r *Registry) Set(source string, n NodeInfo) {
	r.update(func(s *Sources) {
		r.sourceMap(source)[n.Name] = n
		delete(r.invalid, source+"/"+n.Name)
	})
}

// Delete forgets what source says about name.
func (r *Registry) Delete(source, name string) {
	r.update(func(s *Sources) { delete(r.sourceMap(source), name) })
}

// DeleteAll forgets everything source has said.
func (r *Registry) DeleteAll(source string) {
	r.update(func(s *Sources) { clear(r.sourceMap(source)) })
}

// SetAPIUp records whether the API server answers (Kubernetes mode).
func (r *Registry) SetAPIUp(up bool) {
	r.mu.Lock()
	same := r.src.APIUp == up
	r.mu.Unlock()
	if !same {
		r.update(func(s *Sources) { s.APIUp = up })
	}
}

// Reject records that source's claim about name failed validation: the
// source's earlier claim is forgotten and the rejection reported once.
func (r *Registry) Reject(source, name, detail string) {
	r.update(func(s *Sources) {
		delete(r.sourceMap(source), name)
		if r.invalid[source+"/"+name] != detail {
			r.invalid[source+"/"+name] = detail
			r.report(Rejection{Name: name, Reason: ReasonInvalid, Detail: source + ": " + detail})
		}
	})
}

// Peers returns the accepted peers, sorted by name, each with its source.
func (r *Registry) Peers() []Claim {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.accepted)
}

func (r *Registry) recompute() {
	claims, rejected := Merge(r.src)
	prev := make([]string, 0, len(r.accepted))
	for _, c := range r.accepted {
		prev = append(prev, c.Name)
	}
	accepted, more := Accept(r.self, prev, claims)
	r.accepted = accepted
	current := map[string]bool{}
	for _, rej := range append(rejected, more...) {
		current[rej.Name+"/"+rej.Reason] = true
		if r.rejected[rej.Name+"/"+rej.Reason] != rej {
			r.rejected[rej.Name+"/"+rej.Reason] = rej
			r.report(rej)
		}
	}
	for k := range r.rejected {
		if !current[k] {
			delete(r.rejected, k)
		}
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *Registry) report(rej Rejection) {
	if r.onReject != nil {
		r.onReject(rej)
	}
}
