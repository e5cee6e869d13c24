package ipam

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func open(t *testing.T) *Store {
	s, err := Open(filepath.Join(t.TempDir(), "weft"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func reserve(t *testing.T, s *Store, pool string, id string) (netip.Addr, error) {
	t.Helper()
	if err := s.Lock(); err != nil {
		t.Fatal(err)
	}
	defer s.Unlock()
	return reserveOne(s, netip.MustParsePrefix(pool), Attachment{id, "eth0"})
}

// reserveOne is ReserveAll for one pool.
func reserveOne(s *Store, pool netip.Prefix, a Attachment) (netip.Addr, error) {
	ips, err := s.ReserveAll([]netip.Prefix{pool}, a)
	if err != nil {
		return netip.Addr{}, err
	}
	return ips[0], nil
}

func TestReserveSkipsNodeAndSpecialAddresses(t *testing.T) {
	s := open(t)
	pool := "10.244.1.0/29" // .0 network, .1 node, .7 broadcast: .2-.6 usable
	var got []string
	for i := 0; i < 5; i++ {
		ip, err := reserve(t, s, pool, fmt.Sprint("c", i))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ip.String())
	}
	if fmt.Sprint(got) != "[10.244.1.2 10.244.1.3 10.244.1.4 10.244.1.5 10.244.1.6]" {
		t.Fatalf("handed out %v", got)
	}
	if _, err := reserve(t, s, pool, "c5"); err == nil || !contains(err, "no free address") {
		t.Fatalf("exhausted pool: err = %v", err)
	}
}

func TestReserveIsIdempotentPerAttachment(t *testing.T) {
	s := open(t)
	a, _ := reserve(t, s, "10.244.1.0/24", "c1")
	b, _ := reserve(t, s, "10.244.1.0/24", "c1")
	if a != b {
		t.Fatalf("same attachment got %s then %s", a, b)
	}
}

func TestFreedAddressIsNotReusedAtOnce(t *testing.T) {
	s := open(t)
	a, _ := reserve(t, s, "10.244.1.0/24", "c1")
	if _, err := s.Release(Attachment{"c1", "eth0"}); err != nil {
		t.Fatal(err)
	}
	b, _ := reserve(t, s, "10.244.1.0/24", "c2")
	if a == b {
		t.Fatalf("freed address %s handed out again at once", a)
	}
}

func TestWrapsAroundToFreedAddresses(t *testing.T) {
	s := open(t)
	pool := "10.244.1.0/29"
	for i := 0; i < 5; i++ {
		reserve(t, s, pool, fmt.Sprint("c", i))
	}
	s.Release(Attachment{"c1", "eth0"}) // frees .3
	ip, err := reserve(t, s, pool, "new")
	if err != nil || ip.String() != "10.244.1.3" {
		t.Fatalf("got %v, %v; want the one freed address 10.244.1.3", ip, err)
	}
}

func TestIPv6Pool(t *testing.T) {
	s := open(t)
	ip, err := reserve(t, s, "fd00:10:244:1::/64", "c1")
	if err != nil || ip.String() != "fd00:10:244:1::2" {
		t.Fatalf("got %v, %v", ip, err)
	}
	ip4, _ := reserve(t, s, "10.244.1.0/24", "c1")
	if ip4.String() != "10.244.1.2" {
		t.Fatalf("dual-stack v4 = %v", ip4)
	}
	freed, _ := s.Release(Attachment{"c1", "eth0"})
	if len(freed) != 2 {
		t.Fatalf("release freed %v, want both families", freed)
	}
}

func TestTruncatedReservationStaysTaken(t *testing.T) {
	s := open(t)
	os.WriteFile(filepath.Join(s.dir, "10.244.1.2"), nil, 0o600) // a crash left it empty
	ip, _ := reserve(t, s, "10.244.1.0/24", "c1")
	if ip.String() == "10.244.1.2" {
		t.Fatal("handed out an address whose reservation file exists")
	}
}

// Concurrent reservations through separate Store handles (as separate
// plugin processes would) never share an address.
func TestConcurrentReservationsAreDistinct(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "weft")
	var mu sync.Mutex
	seen := map[netip.Addr]string{}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := Open(dir)
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			s.Lock()
			ip, err := reserveOne(s, netip.MustParsePrefix("10.244.1.0/24"), Attachment{fmt.Sprint("c", i), "eth0"})
			s.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if prev, dup := seen[ip]; dup {
				t.Errorf("%s handed to %s and c%d", ip, prev, i)
			}
			seen[ip] = fmt.Sprint("c", i)
		}(i)
	}
	wg.Wait()
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// ReserveAll takes one address per family and, when one pool is full,
// leaves nothing reserved.
func TestReserveAllIsAllOrNothing(t *testing.T) {
	s := open(t)
	pools := []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.9.0/30")} // the second holds one pod
	s.Lock()
	defer s.Unlock()
	got, err := s.ReserveAll(pools, Attachment{"c1", "eth0"})
	if err != nil || len(got) != 2 || got[0].String() != "10.244.1.2" || got[1].String() != "10.244.9.2" {
		t.Fatalf("first: %v %v", got, err)
	}
	if _, err := s.ReserveAll(pools, Attachment{"c2", "eth0"}); err == nil || !contains(err, "no free address") {
		t.Fatalf("second in a full pool: %v", err)
	}
	held, _ := s.List()
	for ip, a := range held {
		if a.ContainerID == "c2" {
			t.Fatalf("failed ReserveAll left %s reserved", ip)
		}
	}
}
