package peer

import "net/netip"

// prefixSet holds prefixes with an owner each and answers, in time
// proportional to the address length (not to how many it holds), whether a
// prefix or an address overlaps any of them. Accept judges every claim
// against everything accepted before it; with lists that was quadratic in
// the number of nodes. A binary trie per family, its nodes in one slice
// (indices, not pointers: one allocation as it grows, nothing for the
// collector to chase).
type prefixSet struct {
	nodes []trieNode // 0 and 1: the IPv4 and IPv6 roots
}

type trieNode struct {
	child [2]int32 // 0: none
	below int32    // prefixes ending strictly below this node
	end   bool     // a prefix ends here
	owner string
}

func newPrefixSet(capacity int) *prefixSet {
	s := &prefixSet{nodes: make([]trieNode, 2, 2+capacity)}
	return s
}

// reset empties s for reuse, keeping what it allocated (or allocating
// room for capacity nodes the first time).
func (s *prefixSet) reset(capacity int) *prefixSet {
	if s.nodes == nil {
		s.nodes = make([]trieNode, 0, 2+capacity)
	}
	s.nodes = append(s.nodes[:0], trieNode{}, trieNode{})
	return s
}

func rootOf(a netip.Addr) int32 {
	if a.Is4() {
		return 0
	}
	return 1
}

func bit(b []byte, i int) int { return int(b[i/8]>>(7-i%8)) & 1 }

// add records p (masked) as owned by owner; a prefix already held keeps
// its first owner.
func (s *prefixSet) add(p netip.Prefix, owner string) {
	p = p.Masked()
	b := p.Addr().AsSlice()
	n := rootOf(p.Addr())
	var pathBuf [128]int32
	path := pathBuf[:0]
	for i := 0; i < p.Bits(); i++ {
		path = append(path, n)
		c := bit(b, i)
		next := s.nodes[n].child[c]
		if next == 0 {
			s.nodes = append(s.nodes, trieNode{})
			next = int32(len(s.nodes) - 1)
			s.nodes[n].child[c] = next
		}
		n = next
	}
	if s.nodes[n].end {
		return
	}
	s.nodes[n].end, s.nodes[n].owner = true, owner
	for _, a := range path {
		s.nodes[a].below++
	}
}

// overlap returns a held prefix that overlaps p: one that contains it (or
// equals it), or one inside it.
func (s *prefixSet) overlap(p netip.Prefix) (ownedPrefix, bool) {
	p = p.Masked()
	b := p.Addr().AsSlice()
	n := rootOf(p.Addr())
	for i := 0; ; i++ {
		nd := &s.nodes[n]
		if nd.end {
			return ownedPrefix{prefixOf(b, i), nd.owner}, true
		}
		if i == p.Bits() {
			if nd.below == 0 {
				return ownedPrefix{}, false
			}
			return s.any(n, b, i), true
		}
		if n = nd.child[bit(b, i)]; n == 0 {
			return ownedPrefix{}, false
		}
	}
}

// contains returns a held prefix that contains a.
func (s *prefixSet) contains(a netip.Addr) (ownedPrefix, bool) {
	return s.overlap(netip.PrefixFrom(a, a.BitLen()))
}

// any finds a prefix held below n (which has some), for the message.
func (s *prefixSet) any(n int32, b []byte, depth int) ownedPrefix {
	b = append([]byte(nil), b...)
	for !s.nodes[n].end {
		c := 1
		if l := s.nodes[n].child[0]; l != 0 && (s.nodes[l].end || s.nodes[l].below > 0) {
			c = 0
		}
		if c == 1 {
			b[depth/8] |= 1 << (7 - depth%8)
		} else {
			b[depth/8] &^= 1 << (7 - depth%8)
		}
		n = s.nodes[n].child[c]
		depth++
	}
	return ownedPrefix{prefixOf(b, depth), s.nodes[n].owner}
}

func prefixOf(b []byte, bits int) netip.Prefix {
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, bits).Masked()
}
