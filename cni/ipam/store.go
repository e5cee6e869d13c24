package ipam

import (
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/atomicfile"
)

// ErrExhausted is returned when a pool has no free address.
var ErrExhausted = errors.New("no free address")

// maxScan bounds one allocation's search, so a huge IPv6 pool cannot make
// an ADD spin.
const maxScan = 1 << 20

// Attachment identifies who holds a reservation, as CNI does: the
// container ID and the interface name inside it.
type Attachment struct {
	ContainerID string
	IfName      string
}

// Store is one network's reservations on one node.
type Store struct {
	dir  string
	lock *os.File
}

// Open opens (creating) the reservation directory dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam data dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ipam lock: %w", err)
	}
	return &Store{dir: dir, lock: f}, nil
}

// Close releases the store's file handle (and so its lock).
func (s *Store) Close() error { return s.lock.Close() }

// Lock takes the store's exclusive lock; every other call must run under it.
func (s *Store) Lock() error {
	for {
		err := unix.Flock(int(s.lock.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Unlock releases the lock.
func (s *Store) Unlock() error { return unix.Flock(int(s.lock.Fd()), unix.LOCK_UN) }

// ReserveAll reserves one address in each pool for a (one per family for
// dual-stack), reading the reservations once. On error it releases what it
// reserved here.
func (s *Store) ReserveAll(pools []netip.Prefix, a Attachment) ([]netip.Addr, error) {
	held, err := s.List()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, pool := range pools {
		ip, err := s.reserve(pool.Masked(), a, held)
		if err != nil {
			if _, rerr := s.Release(a); rerr != nil {
				return nil, errors.Join(err, rerr)
			}
			return nil, err
		}
		held[ip] = a
		out = append(out, ip)
	}
	return out, nil
}

func (s *Store) reserve(pool netip.Prefix, a Attachment, held map[netip.Addr]Attachment) (netip.Addr, error) {
	for ip, h := range held {
		if h == a && pool.Contains(ip) {
			return ip, nil
		}
	}
	start := s.last(pool)
	if !start.IsValid() || !pool.Contains(start) {
		start = pool.Addr()
	}
	// Visit every address once, starting after the last one handed out.
	steps := maxScan
	if host := pool.Addr().BitLen() - pool.Bits(); host < 20 {
		steps = 1 << host
	}
	ip := start
	for i := 0; i < steps; i++ {
		ip = ip.Next()
		if !ip.IsValid() || !pool.Contains(ip) {
			ip = pool.Addr() // wrap
		}
		if !Usable(pool, ip) {
			continue
		}
		if _, taken := held[ip]; taken {
			continue
		}
		err := s.create(ip, a)
		if err == nil {
			s.setLast(pool, ip)
			return ip, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return netip.Addr{}, err
		}
	}
	return netip.Addr{}, fmt.Errorf("pool %s: %w", pool, ErrExhausted)
}

// Usable reports whether ip in pool may be given to a pod.
func Usable(pool netip.Prefix, ip netip.Addr) bool {
	if ip == pool.Addr() || ip == pool.Addr().Next() {
		return false // network address; the node's own address
	}
	if ip.Is4() && ip == lastAddr(pool) {
		return false // broadcast
	}
	return true
}

// Release removes every reservation held by a and returns the addresses freed.
func (s *Store) Release(a Attachment) ([]netip.Addr, error) {
	held, err := s.List()
	if err != nil {
		return nil, err
	}
	var freed []netip.Addr
	for ip, h := range held {
		if h == a {
			if err := os.Remove(filepath.Join(s.dir, ip.String())); err != nil && !os.IsNotExist(err) {
				return freed, fmt.Errorf("release %s: %w", ip, err)
			}
			freed = append(freed, ip)
		}
	}
	return freed, nil
}

// ReleaseAddr removes the reservation of ip, whoever holds it.
func (s *Store) ReleaseAddr(ip netip.Addr) error {
	err := os.Remove(filepath.Join(s.dir, ip.String()))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

// List returns every reservation. A reservation file that cannot be read
// as one (cut short by a crash) still counts as taken, held by nobody.
func (s *Store) List() (map[netip.Addr]Attachment, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	out := make(map[netip.Addr]Attachment, len(ents))
	for _, e := range ents {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue // lock, last-*, temporary files
		}
		out[ip] = readReservation(filepath.Join(s.dir, e.Name()))
	}
	return out, nil
}

// create writes the reservation to a temporary file and links it into
// place: the link fails if the address is taken, and the reservation
// appears whole or not at all.
func (s *Store) create(ip netip.Addr, a Attachment) error {
	tmp, err := os.CreateTemp(s.dir, ".res-*")
	if err != nil {
		return fmt.Errorf("reserve %s: %w", ip, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(a.ContainerID + "\n" + a.IfName + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("reserve %s: %w", ip, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("reserve %s: %w", ip, err)
	}
	tmp.Close()
	if err := os.Link(tmp.Name(), filepath.Join(s.dir, ip.String())); err != nil {
		if errors.Is(err, os.ErrExist) {
			return os.ErrExist
		}
		return fmt.Errorf("reserve %s: %w", ip, err)
	}
	return nil
}

func lastFile(pool netip.Prefix) string {
	if pool.Addr().Is4() {
		return "last-4"
	}
	return "last-6"
}

func (s *Store) last(pool netip.Prefix) netip.Addr {
	b, err := os.ReadFile(filepath.Join(s.dir, lastFile(pool)))
	if err != nil {
		return netip.Addr{}
	}
	ip, _ := netip.ParseAddr(strings.TrimSpace(string(b)))
	return ip
}

// setLast records the last address handed out; losing it in a crash only
// means the search starts earlier next time.
func (s *Store) setLast(pool netip.Prefix, ip netip.Addr) {
	_ = atomicfile.Write(filepath.Join(s.dir, lastFile(pool)), []byte(ip.String()+"\n"), 0o600) // a hint only
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	n := new(big.Int).SetBytes(b)
	host := p.Addr().BitLen() - p.Bits()
	n.Or(n, new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(host)), big.NewInt(1)))
	out := n.FillBytes(make([]byte, len(b)))
	a, _ := netip.AddrFromSlice(out)
	return a
}

// maxReservation bounds what is read of a reservation file: a container ID
// (at most 256 bytes), a newline and an interface name.
const maxReservation = 512

func readReservation(path string) Attachment {
	f, err := os.Open(path)
	if err != nil {
		return Attachment{}
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, maxReservation+1))
	return ParseReservation(b)
}

// ParseReservation reads a reservation file's content: the container ID and
// the interface name on two lines. Anything else is held by nobody (still
// taken, for GC to free).
func ParseReservation(b []byte) Attachment {
	if len(b) > maxReservation {
		return Attachment{}
	}
	id, ifname, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if strings.ContainsAny(id, "\n\r\x00") || strings.ContainsAny(ifname, "\n\r\x00/") || len(id) > 256 || len(ifname) > 15 {
		return Attachment{}
	}
	return Attachment{ContainerID: id, IfName: ifname}
}
