package pods

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/internal/labtest"
	"github.com/weftnet/weft/internal/netlab"
)

// TestCNIOperations drives every CNI operation through libcni: ADD, CHECK
// (passing, then failing once the pod's host route is gone), GC, STATUS,
// VERSION, and DEL twice, also after the sandbox is gone.
func TestCNIOperations(t *testing.T) {
	c, n := labtest.OneNode(t)
	ctx := context.Background()
	cniConf, list, err := n.CNI(c.Bins)
	if err != nil {
		t.Fatal(err)
	}
	// libcni 1.3 takes 1.1.0 from cniVersions; older runtimes read cniVersion.
	if raw := string(list.Bytes); !strings.Contains(raw, `"cniVersion": "`+api.ConfVersion+`"`) {
		t.Errorf("conflist cniVersion is not %s (what containerd 1.6/1.7 accept):\n%s", api.ConfVersion, raw)
	}
	if list.CNIVersion != "1.1.0" || len(list.Plugins) != 2 || list.Plugins[0].Network.Type != "weft-cni" || list.Plugins[1].Network.Type != "portmap" {
		t.Fatalf("conflist: version %s, plugins %d", list.CNIVersion, len(list.Plugins))
	}
	vi, err := cniConf.GetVersionInfo(ctx, "weft-cni")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(vi.SupportedVersions(), ","); got != "0.4.0,1.0.0,1.1.0" {
		t.Errorf("VERSION lists %s", got)
	}
	if err := n.Do(func() error { return cniConf.GetStatusNetworkList(ctx, list) }); err != nil {
		t.Errorf("STATUS with a ready agent: %v", err)
	}

	p := c.AddPod(n, "a")
	if len(p.Result.Interfaces) != 2 || p.Result.Interfaces[1].Sandbox != p.Netns || len(p.Result.IPs) != 2 || len(p.Result.Routes) != 2 {
		t.Fatalf("ADD result lacks interfaces, IPs or routes: %+v", p.Result)
	}
	host := p.Result.Interfaces[0].Name
	if host != cni.HostVethName(p.ContainerID, p.IfName) || len(host) > 15 {
		t.Errorf("host veth %q", host)
	}
	out, _ := exec.Command("ip", "-n", p.NS, "-d", "link", "show", "eth0").CombinedOutput()
	if !strings.Contains(string(out), "mtu 1420") {
		t.Errorf("pod eth0 is not at the tunnel MTU 1420:\n%s", out)
	}
	if err := n.Do(func() error { return cniConf.CheckNetworkList(ctx, list, p.RuntimeConf()) }); err != nil {
		t.Errorf("CHECK of a healthy pod: %v", err)
	}
	if _, err := n.Run(ctx, "ip", "route", "del", p.Addr(false).String()+"/32", "dev", host); err != nil {
		t.Fatal(err)
	}
	err = n.Do(func() error { return cniConf.CheckNetworkList(ctx, list, p.RuntimeConf()) })
	if err == nil || !strings.Contains(err.Error(), "host route") {
		t.Errorf("CHECK with the host route gone: %v, want a failure naming the route", err)
	}

	// GC keeps what the runtime lists and removes the rest.
	keep := c.AddPod(n, "keep")
	if err := n.Do(func() error {
		return cniConf.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: keep.ContainerID, IfName: "eth0"}}})
	}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got := labtest.Reservations(t, n); !slices.Equal(got, labtest.SortedAddrs(keep)) {
		t.Errorf("after GC reservations are %v, want only the kept pod's %v", got, labtest.SortedAddrs(keep))
	}
	if got := labtest.HostVeths(t, n); !slices.Equal(got, []string{keep.Result.Interfaces[0].Name}) {
		t.Errorf("after GC host veths are %v, want only %s", got, keep.Result.Interfaces[0].Name)
	}

	// DEL twice, the second time with the sandbox already gone.
	for i := 0; i < 2; i++ {
		if err := n.Do(func() error { return cniConf.DelNetworkList(ctx, list, keep.RuntimeConf()) }); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
		exec.Command("ip", "netns", "del", keep.NS).Run()
	}
	if got := labtest.Reservations(t, n); len(got) != 0 {
		t.Errorf("DEL left reservations %v", got)
	}
	if got := labtest.HostVeths(t, n); len(got) != 0 {
		t.Errorf("DEL left host veths %v", got)
	}

	// STATUS reports an agent that is not running as unavailable (50).
	c.Agents[n.Name].Kill()
	err = n.Do(func() error { return cniConf.GetStatusNetworkList(ctx, list) })
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != types.ErrPluginNotAvailable {
		t.Errorf("STATUS with the agent down: %v, want code 50", err)
	}
}

// TestConcurrentAddsGetDistinctAddresses: 100 ADDs at once on one node
// give 100 distinct addresses per family; DEL of all frees every one.
func TestConcurrentAddsGetDistinctAddresses(t *testing.T) {
	c, n := labtest.OneNode(t)
	ctx := context.Background()
	const count = 100
	pods := make([]*netlab.Pod, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pods[i], errs[i] = n.AddPod(ctx, c.Bins, fmt.Sprint("p", i))
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, p := range pods {
		if errs[i] != nil {
			t.Fatalf("ADD %d: %v", i, errs[i])
		}
		for _, v6 := range []bool{false, true} {
			a := p.Addr(v6)
			if j, dup := seen[a]; dup {
				t.Fatalf("%s handed to pod %d and pod %d", a, j, i)
			}
			seen[a] = i
		}
	}
	if len(seen) != 2*count || len(labtest.Reservations(t, n)) != 2*count || len(labtest.HostVeths(t, n)) != count {
		t.Fatalf("%d distinct addresses, %d reservations, %d host veths; want %d, %d, %d",
			len(seen), len(labtest.Reservations(t, n)), len(labtest.HostVeths(t, n)), 2*count, 2*count, count)
	}
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = pods[i].Delete(ctx, c.Bins)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("DEL %d: %v", i, err)
		}
	}
	if r, v := labtest.Reservations(t, n), labtest.HostVeths(t, n); len(r) != 0 || len(v) != 0 {
		t.Fatalf("after DEL of all: reservations %v, veths %v", r, v)
	}
}

// TestKilledAddLeaksNothingAfterGC kills the plugin (SIGKILL, through the
// runtime's own context cancellation) at random instants of ADD; addresses
// are never handed out twice, and GC leaves exactly the pods that succeeded.
func TestKilledAddLeaksNothingAfterGC(t *testing.T) {
	c, n := labtest.OneNode(t)
	cniConf, list, err := n.CNI(c.Bins)
	if err != nil {
		t.Fatal(err)
	}
	var alive []*netlab.Pod
	killed := 0
	for i := 0; i < 40; i++ {
		p, err := n.NewSandbox(fmt.Sprint("k", i))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(2+rand.IntN(60))*time.Millisecond)
		err = n.Do(func() error {
			res, err := cniConf.AddNetworkList(ctx, list, p.RuntimeConf())
			if err == nil {
				p.Result, err = currentResult(res)
			}
			return err
		})
		cancel()
		if err == nil {
			alive = append(alive, p)
		} else {
			killed++
		}
	}
	t.Logf("%d ADDs completed, %d killed mid-way", len(alive), killed)
	if killed == 0 {
		t.Fatal("no ADD was interrupted; the test proved nothing")
	}
	var valid []types.GCAttachment
	var want, wantVeths []string
	seen := map[string]bool{}
	for _, p := range alive {
		valid = append(valid, types.GCAttachment{ContainerID: p.ContainerID, IfName: p.IfName})
		for _, a := range labtest.SortedAddrs(p) {
			if seen[a] {
				t.Fatalf("address %s handed out twice", a)
			}
			seen[a] = true
			want = append(want, a)
		}
		wantVeths = append(wantVeths, p.Result.Interfaces[0].Name)
	}
	if err := n.Do(func() error {
		return cniConf.GCNetworkList(context.Background(), list, &libcni.GCArgs{ValidAttachments: valid})
	}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	slices.Sort(want)
	slices.Sort(wantVeths)
	if got := labtest.Reservations(t, n); !slices.Equal(got, want) {
		t.Errorf("after GC reservations %v, want %v", got, want)
	}
	if got := labtest.HostVeths(t, n); !slices.Equal(got, wantVeths) {
		t.Errorf("after GC host veths %v, want %v", got, wantVeths)
	}
	for _, p := range alive {
		if !p.Ping(context.Background(), api.FirstAddress(n.PodCIDRs[0]), 1) {
			t.Errorf("surviving pod %s lost connectivity", p.Name)
		}
	}
}

// TestCNIBadInput: bad configs and environments give the spec's error codes,
// with one line a person can act on, and leave nothing behind.
func TestCNIBadInput(t *testing.T) {
	c, n := labtest.OneNode(t)
	ctx := context.Background()
	p, err := n.NewSandbox("bad")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(c.Lab.Dir, "bad-ipam")
	conf := func(extra string) string {
		return `{"cniVersion":"1.1.0","name":"weft","type":"weft-cni","podCIDRs":["10.244.1.0/24"],"mtu":1420,"dataDir":"` + dataDir + `"` + extra + `}`
	}
	notNS := filepath.Join(c.Lab.Dir, "plain-file")
	os.WriteFile(notNS, nil, 0o600)
	full := filepath.Join(c.Lab.Dir, "full")
	os.MkdirAll(full, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", full).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", full).Run()
	os.MkdirAll(filepath.Join(full, "weft"), 0o700)
	os.WriteFile(filepath.Join(full, "weft", "lock"), nil, 0o600)
	exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(full, "filler"), "bs=4k").Run()

	cases := []struct {
		name   string
		conf   string
		id     string
		netns  string
		ifname string
		code   uint
		msg    string
	}{
		{"malformed JSON", `{"cniVersion":"1.1.0","name":`, "", "", "", types.ErrDecodingFailure, ""},
		{"unknown field", conf(`,"podCIDR":"10.0.0.0/24"`), "", "", "", types.ErrInvalidNetworkConfig, `unknown field "podCIDR"`},
		{"no pod CIDRs", strings.Replace(conf(""), `"podCIDRs":["10.244.1.0/24"]`, `"podCIDRs":[]`, 1), "", "", "", types.ErrInvalidNetworkConfig, "podCIDRs"},
		{"pod CIDR not a network", strings.Replace(conf(""), "10.244.1.0/24", "10.244.1.9/24", 1), "", "", "", types.ErrInvalidNetworkConfig, "not a network CIDR"},
		{"MTU too small", strings.Replace(conf(""), `"mtu":1420`, `"mtu":100`, 1), "", "", "", types.ErrInvalidNetworkConfig, "mtu 100"},
		{"relative data dir", strings.Replace(conf(""), dataDir, "ipam", 1), "", "", "", types.ErrInvalidNetworkConfig, "dataDir"},
		{"unsupported CNI version", strings.Replace(conf(""), "1.1.0", "9.9.9", 1), "", "", "", types.ErrIncompatibleCNIVersion, ""},
		{"netns missing", conf(""), "", "/run/netns/does-not-exist", "", types.ErrInvalidEnvironmentVariables, "CNI_NETNS"},
		{"netns is not a netns", conf(""), "", notNS, "", types.ErrInvalidEnvironmentVariables, "not a network namespace"},
		{"container ID with spaces", conf(""), "bad id", "", "", types.ErrInvalidEnvironmentVariables, ""},
		{"interface name too long", conf(""), "", "", "eth0-much-too-long", types.ErrInvalidEnvironmentVariables, ""},
		{"disk full", strings.Replace(conf(""), dataDir, full, 1), "", "", "", types.ErrTryAgainLater, "no space left"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := &invoke.Args{Command: "ADD", ContainerID: "bad-input-test", NetNS: p.Netns, IfName: "eth0", Path: c.Bins}
			if tc.id != "" {
				args.ContainerID = tc.id
			}
			if tc.netns != "" {
				args.NetNS = tc.netns
			}
			if tc.ifname != "" {
				args.IfName = tc.ifname
			}
			var err error
			n.Do(func() error {
				_, err = invoke.ExecPluginWithResult(ctx, filepath.Join(c.Bins, "weft-cni"), []byte(tc.conf), args, nil)
				return nil
			})
			var ce *types.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a CNI error", err)
			}
			if ce.Code != tc.code || !strings.Contains(ce.Msg, tc.msg) || strings.Contains(ce.Msg, "\n") {
				t.Fatalf("got code %d %q, want code %d with a one-line message containing %q", ce.Code, ce.Msg, tc.code, tc.msg)
			}
			if v := labtest.HostVeths(t, n); len(v) != 0 {
				t.Fatalf("a failed ADD left host veths %v", v)
			}
			t.Logf("code %d: %s", ce.Code, ce.Msg)
		})
	}
	if r, _ := os.ReadDir(filepath.Join(dataDir, "weft")); len(r) > 1 {
		t.Errorf("failed ADDs left files in the IPAM directory: %v", r)
	}

	t.Run("exhausted pool", func(t *testing.T) {
		tiny := strings.Replace(conf(""), "10.244.1.0/24", "10.244.1.0/30", 1) // only .2 is a pod address
		args := &invoke.Args{Command: "ADD", ContainerID: "first", NetNS: p.Netns, IfName: "eth0", Path: c.Bins}
		var err error
		n.Do(func() error {
			if _, err = invoke.ExecPluginWithResult(ctx, filepath.Join(c.Bins, "weft-cni"), []byte(tiny), args, nil); err != nil {
				return nil
			}
			q, _ := n.NewSandbox("second")
			args2 := &invoke.Args{Command: "ADD", ContainerID: "second", NetNS: q.Netns, IfName: "eth0", Path: c.Bins}
			_, err = invoke.ExecPluginWithResult(ctx, filepath.Join(c.Bins, "weft-cni"), []byte(tiny), args2, nil)
			return nil
		})
		var ce *types.Error
		if !errors.As(err, &ce) || ce.Code != types.ErrTryAgainLater || !strings.Contains(ce.Msg, "no free address") {
			t.Fatalf("second ADD in a one-address pool: %v, want code 11 'no free address'", err)
		}
		if v := labtest.HostVeths(t, n); len(v) != 1 {
			t.Fatalf("host veths %v, want only the first pod's", v)
		}
	})
}

func currentResult(r types.Result) (*current.Result, error) { return current.NewResultFromResult(r) }

// TestNoNATAndPodMTU: a server pod sees the client pod's own address (IPv4
// and IPv6) and a remote node's own pod-CIDR address; a don't-fragment ping
// of exactly the pod MTU crosses the mesh, one byte more fails at once.
func TestNoNATAndPodMTU(t *testing.T) {
	c := labtest.NewPodCluster(t, 2)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	client, server := c.AddPod(n1, "client"), c.AddPod(n2, "server")
	ctx := context.Background()

	seen := labtest.ListenIn(t, server.Do, ":8080")
	check := func(who string, do func(func() error) error, dst, want netip.Addr) {
		t.Helper()
		if err := labtest.DialFrom(do, netip.AddrPortFrom(dst, 8080)); err != nil {
			t.Fatalf("%s cannot connect to %s: %v", who, dst, err)
		}
		if got := <-seen; got != want {
			t.Errorf("%s -> %s: server saw %s, want %s (no NAT)", who, dst, got, want)
		}
	}
	check("client pod", client.Do, server.Addr(false), client.Addr(false))
	check("client pod", client.Do, server.Addr(true), client.Addr(true))
	check("node1", n1.Do, server.Addr(false), api.FirstAddress(n1.PodCIDRs[0]))
	check("node1", n1.Do, server.Addr(true), api.FirstAddress(n1.PodCIDRs[1]))

	const mtu = 1420
	for _, tc := range []struct {
		v6     bool
		header int
	}{{false, 28}, {true, 48}} {
		dst := server.Addr(tc.v6)
		if !client.Ping(ctx, dst, 2, "-M", "do", "-s", fmt.Sprint(mtu-tc.header)) {
			t.Errorf("don't-fragment ping of exactly %d bytes to %s did not pass", mtu, dst)
		}
		out, err := client.Command(ctx, "ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", fmt.Sprint(mtu-tc.header+1), dst.String()).CombinedOutput()
		if err == nil {
			t.Errorf("a %d-byte don't-fragment ping to %s passed; the pod MTU is %d", mtu+1, dst, mtu)
		}
		if !strings.Contains(strings.ToLower(string(out)), "message too long") {
			t.Errorf("one byte over the MTU should fail locally with 'message too long', not vanish on the way; got:\n%s", out)
		}
	}
}

// TestPodCannotSpoofItsSource: packets a pod sends from an address that is
// not its own are dropped on the host, IPv4 and IPv6; its own still pass.
func TestPodCannotSpoofItsSource(t *testing.T) {
	c := labtest.NewPodCluster(t, 2)
	n1, n2 := c.Lab.Nodes()[0], c.Lab.Nodes()[1]
	a, b := c.AddPod(n1, "a"), c.AddPod(n1, "b")
	remote := c.AddPod(n2, "remote")
	ctx := context.Background()
	spoofs := map[bool][]string{
		false: {b.Addr(false).String(), "10.244.1.250", "10.244.2.77", "192.0.2.1"},
		true:  {b.Addr(true).String(), "fd00:10:244:1::fa", "fd00:10:244:2::77"},
	}
	for _, v6 := range []bool{false, true} {
		for _, dst := range []netip.Addr{remote.Addr(v6), api.FirstAddress(n1.PodCIDRs[map[bool]int{false: 0, true: 1}[v6]])} {
			if !a.Ping(ctx, dst, 2) {
				t.Fatalf("pod a cannot reach %s from its own address", dst)
			}
			for _, src := range spoofs[v6] {
				bits := "/32"
				if v6 {
					bits = "/128"
				}
				exec.Command("ip", "-n", a.NS, "addr", "add", src+bits, "dev", "eth0", "nodad").Run()
				if a.Ping(ctx, dst, 0.5, "-I", src) {
					t.Errorf("pod a reached %s with spoofed source %s", dst, src)
				}
				exec.Command("ip", "-n", a.NS, "addr", "del", src+bits, "dev", "eth0").Run()
			}
		}
	}
	out, err := n1.Run(ctx, "nft", "list", "chain", "inet", "weft", "antispoof")
	vethRule := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "fib saddr . iif oif missing") && strings.Contains(l, `iifname "`+api.HostVethPrefix) {
			vethRule = l
		}
	}
	if err != nil || !strings.Contains(vethRule, "drop") || strings.Contains(vethRule, "packets 0 ") {
		t.Errorf("anti-spoofing's rule for pod veths shows no drops (%v):\n%s", err, out)
	}
}
