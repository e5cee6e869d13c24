package peer

import (
	"reflect"
	"slices"
	"sync"
)

// Registry holds what every source has said and the view accepted from it.
// Sources call its setters; the agent reads Peers after Changed fires.
type Registry struct {
	self   NodeInfo
	bounds Bounds

	mu       sync.Mutex
	src      Sources
	dirty    bool   // src or self changed since accepted was computed
	version  uint64 // counts the computations of accepted (PeerInfosSince)
	accepted []Claim
	scratch  acceptScratch        // Accept's, kept between passes
	rejected map[string]Rejection // by name and reason: each reported once
	invalid  map[string]string    // source/name -> detail of its last invalid claim
	pending  []Rejection          // found under the lock, reported after it

	changed  chan struct{}
	onReject func(Rejection)
}

// maxInvalid bounds the invalid claims remembered for de-duplication: names
// come from gossip, where anyone with the key can invent them.
const maxInvalid = 1024

// NewRegistry returns a registry for the node self. onReject is called once
// for each new rejection (for logging, metrics and Events).
func NewRegistry(self NodeInfo, kubeMode bool, bounds Bounds, onReject func(Rejection)) *Registry {
	return &Registry{
		self:   self,
		bounds: bounds,
		src: Sources{KubeMode: kubeMode, Kube: map[string]NodeInfo{},
			Gossip: map[string]NodeInfo{}, Cache: map[string]NodeInfo{}},
		rejected: map[string]Rejection{},
		invalid:  map[string]string{},
		changed:  make(chan struct{}, 1),
		onReject: onReject,
	}
}

// SetSelf replaces this node's own claim (its key after a rotation), which
// peers are judged against.
func (r *Registry) SetSelf(self NodeInfo) {
	r.update(func(*Sources) { r.self = self })
}

// Changed fires (coalesced) whenever the accepted view may have changed.
func (r *Registry) Changed() <-chan struct{} { return r.changed }

// update changes the sources under the lock and marks the accepted view
// stale: the next Peers recomputes it, once for any number of updates (an
// informer's first list of a thousand Nodes is a thousand updates). The
// rejections found are reported after the lock is released, so a callback
// (logs, metrics, Events) never runs under it.
func (r *Registry) update(fn func(s *Sources)) {
	r.mu.Lock()
	fn(&r.src)
	r.dirty = true
	r.unlockAndReport()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// unlockAndReport releases the lock and then delivers the pending rejections.
func (r *Registry) unlockAndReport() {
	report := r.pending
	r.pending = nil
	r.mu.Unlock()
	if r.onReject != nil {
		for _, rej := range report {
			r.onReject(rej)
		}
	}
}

func (r *Registry) sourceMap(source Source) map[string]NodeInfo {
	switch source {
	case SourceKubernetes:
		return r.src.Kube
	case SourceCache:
		return r.src.Cache
	}
	return r.src.Gossip
}

// Set records what source says about n.Name. Saying again what it said
// (an informer's resync, a Node status heartbeat) changes nothing and does
// not fire Changed.
func (r *Registry) Set(source Source, n NodeInfo) {
	r.mu.Lock()
	old, had := r.sourceMap(source)[n.Name]
	_, wasInvalid := r.invalid[string(source)+"/"+n.Name]
	r.mu.Unlock()
	if had && !wasInvalid && Same(old, n) && slices.Equal(old.NodeAddrs, n.NodeAddrs) {
		return
	}
	r.update(func(s *Sources) {
		r.sourceMap(source)[n.Name] = n
		delete(r.invalid, string(source)+"/"+n.Name)
	})
}

// Delete forgets what source says about name.
func (r *Registry) Delete(source Source, name string) {
	r.update(func(s *Sources) { delete(r.sourceMap(source), name) })
}

// DeleteAll forgets everything source has said.
func (r *Registry) DeleteAll(source Source) {
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
func (r *Registry) Reject(source Source, name, detail string) {
	r.update(func(s *Sources) {
		delete(r.sourceMap(source), name)
		if r.invalid[string(source)+"/"+name] != detail {
			if len(r.invalid) >= maxInvalid {
				clear(r.invalid) // only de-duplicates reports: forgetting costs a repeated log line
			}
			r.invalid[string(source)+"/"+name] = detail
			r.report(Rejection{Name: name, Reason: ReasonInvalid, Detail: string(source) + ": " + detail})
		}
	})
}

// Peers returns the accepted peers, sorted by name, each with its source,
// computing them first if a source changed; rejections found then are
// reported before it returns.
func (r *Registry) Peers() []Claim {
	r.lockAccepted()
	out := slices.Clone(r.accepted)
	r.unlockAndReport()
	return out
}

// EachPeer calls fn with each accepted peer, in Peers' order, under the
// registry's lock and without copying them: for a reader that keeps a few
// fields of a few peers, where Peers' copy of every claim (megabytes at
// thousands of Nodes) would be most of its cost. fn must not call the
// registry, nor keep c.
func (r *Registry) EachPeer(fn func(c *Claim)) {
	r.lockAccepted()
	for i := range r.accepted {
		fn(&r.accepted[i])
	}
	r.unlockAndReport()
}

// PeerInfos returns what Peers does without each claim's source, copied
// once (the agent's pass reads it at every change: at thousands of Nodes,
// a copy of the claims and then of their NodeInfo was twice the garbage).
func (r *Registry) PeerInfos() []NodeInfo {
	r.lockAccepted()
	out := make([]NodeInfo, len(r.accepted))
	for i := range r.accepted {
		out[i] = r.accepted[i].NodeInfo
	}
	r.unlockAndReport()
	return out
}

// PeerInfosSince is PeerInfos when the accepted peers were computed again
// since version (what it returned last; 0: never asked), with their new
// version; changed is false, and nothing copied, when they were not. Any
// change of a source computes them again, so an unchanged version means
// the same peers.
func (r *Registry) PeerInfosSince(version uint64) (out []NodeInfo, now uint64, changed bool) {
	r.lockAccepted()
	defer r.unlockAndReport()
	if version != 0 && version == r.version {
		return nil, version, false
	}
	out = make([]NodeInfo, len(r.accepted))
	for i := range r.accepted {
		out[i] = r.accepted[i].NodeInfo
	}
	return out, r.version, true
}

// sameClaim says whether two claims say the same in every field.
func sameClaim(a, b Claim) bool { return reflect.DeepEqual(a, b) }

// lockAccepted takes the lock and brings the accepted peers up to date
// with the sources; the caller ends with unlockAndReport.
func (r *Registry) lockAccepted() {
	r.mu.Lock()
	if r.dirty {
		r.recompute()
		r.dirty = false
	}
}

func (r *Registry) recompute() {
	claims, rejected := Merge(r.src)
	prev := make([]string, 0, len(r.accepted))
	for _, c := range r.accepted {
		prev = append(prev, c.Name)
	}
	accepted, more := accept(r.self, r.bounds, prev, claims, &r.scratch)
	if r.version == 0 || !slices.EqualFunc(accepted, r.accepted, sameClaim) {
		r.version++ // a source said something new (a refresh of the same claims does not count)
	}
	r.accepted = accepted
	current := map[string]bool{}
	for _, rej := range append(rejected, more...) {
		current[rej.Name+"/"+string(rej.Reason)] = true
		if r.rejected[rej.Name+"/"+string(rej.Reason)] != rej {
			r.rejected[rej.Name+"/"+string(rej.Reason)] = rej
			r.report(rej)
		}
	}
	for k := range r.rejected {
		if !current[k] {
			delete(r.rejected, k)
		}
	}
}

// report queues rej for the callback; update delivers it after unlocking.
func (r *Registry) report(rej Rejection) { r.pending = append(r.pending, rej) }
