package archtest

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// pure are weft's packages that decide without acting.
var pure = []string{
	"github.com/weftnet/weft/api",
	"github.com/weftnet/weft/peer",
	"github.com/weftnet/weft/plan",
	"github.com/weftnet/weft/policy",
}

// forbiddenDeps may not be anywhere in a pure package's dependencies: the
// libraries that reach the network, the kernel or the API server.
var forbiddenDeps = []string{
	"k8s.io/client-go",
	"github.com/hashicorp/memberlist",
	"github.com/vishvananda/netlink",
	"github.com/vishvananda/netns",
	"sigs.k8s.io/knftables",
	"github.com/google/nftables",
	"golang.zx2c4.com/wireguard/wgctrl", // the client; wgtypes (key types) is allowed below
	"golang.zx2c4.com/wireguard/device", "github.com/tailscale/wireguard-go",
	"golang.zx2c4.com/wireguard/tun",
	"github.com/containernetworking/plugins",
	"github.com/prometheus",
	"github.com/weftnet/weft/agent",
	"github.com/weftnet/weft/mesh",
	"github.com/weftnet/weft/nft",
	"github.com/weftnet/weft/cni",
	"github.com/weftnet/weft/internal",
}

// allowedDeps are exceptions inside a forbidden tree.
var allowedDeps = []string{"golang.zx2c4.com/wireguard/wgctrl/wgtypes"}

// within reports whether package path p is root or below it.
func within(p, root string) bool { return p == root || strings.HasPrefix(p, root+"/") }

// forbiddenImports may not be imported by a pure package's own files (the
// standard library reaches them from everywhere, fmt included, so they are
// checked on the package itself).
var forbiddenImports = []string{"os", "os/exec", "os/signal", "net", "net/http", "syscall", "io/ioutil", "golang.org/x/sys/unix"}

func TestPurePackagesDoNoIO(t *testing.T) {
	for _, pkg := range pure {
		b, err := exec.Command("go", "list", "-json", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		var p struct {
			Imports []string
			Deps    []string
		}
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		for _, imp := range p.Imports {
			for _, bad := range forbiddenImports {
				if imp == bad {
					t.Errorf("%s imports %s: a pure package does no I/O", pkg, imp)
				}
			}
		}
		for _, dep := range p.Deps { // every transitive dependency, the direct imports included
			if slices.ContainsFunc(allowedDeps, func(ok string) bool { return within(dep, ok) }) {
				continue
			}
			for _, bad := range forbiddenDeps {
				if within(dep, bad) {
					t.Errorf("%s depends on %s: a pure package reaches no network, kernel or API server", pkg, dep)
				}
			}
		}
	}
}

// rooms are the packages that act for one concern, each with the libraries
// it must not reach: the key manager reads the device through an interface
// and never touches the kernel, nftables, the API server or gossip (the
// agent wires it); gossip reaches neither the kernel nor the API server;
// the policy controller touches no WireGuard, netlink or gossip;
// mesh and nft each own their own kernel interface only.
var rooms = map[string][]string{
	"github.com/weftnet/weft/keys": {
		"github.com/vishvananda/netlink", "sigs.k8s.io/knftables", "k8s.io/client-go", "github.com/hashicorp/memberlist",
		"golang.zx2c4.com/wireguard/wgctrl", "golang.zx2c4.com/wireguard/device", "github.com/tailscale/wireguard-go",
		"github.com/weftnet/weft/agent", "github.com/weftnet/weft/mesh", "github.com/weftnet/weft/nft",
	},
	"github.com/weftnet/weft/source/gossip": {
		"github.com/vishvananda/netlink", "sigs.k8s.io/knftables", "golang.zx2c4.com/wireguard/wgctrl", "golang.zx2c4.com/wireguard/device", "github.com/tailscale/wireguard-go",
		"k8s.io/client-go/kubernetes", "k8s.io/client-go/informers",
		"github.com/weftnet/weft/agent", "github.com/weftnet/weft/mesh", "github.com/weftnet/weft/nft", "github.com/weftnet/weft/keys",
	},
	"github.com/weftnet/weft/source/kube": {
		"github.com/vishvananda/netlink", "sigs.k8s.io/knftables", "golang.zx2c4.com/wireguard/wgctrl", "golang.zx2c4.com/wireguard/device", "github.com/tailscale/wireguard-go", "github.com/hashicorp/memberlist",
		"github.com/weftnet/weft/agent", "github.com/weftnet/weft/mesh", "github.com/weftnet/weft/nft", "github.com/weftnet/weft/keys",
	},
	// The agent's Kubernetes clients and informers, shared by the sources
	// and the policy controller: only the API server.
	"github.com/weftnet/weft/kubeclient": {
		"github.com/vishvananda/netlink", "sigs.k8s.io/knftables", "golang.zx2c4.com/wireguard/wgctrl", "golang.zx2c4.com/wireguard/device", "github.com/tailscale/wireguard-go", "github.com/hashicorp/memberlist",
		"github.com/weftnet/weft/agent", "github.com/weftnet/weft/mesh", "github.com/weftnet/weft/nft", "github.com/weftnet/weft/keys", "github.com/weftnet/weft/source", "github.com/weftnet/weft/netpol",
	},
	"github.com/weftnet/weft/netpol": {
		"github.com/vishvananda/netlink", "golang.zx2c4.com/wireguard/wgctrl", "golang.zx2c4.com/wireguard/device", "github.com/tailscale/wireguard-go", "github.com/hashicorp/memberlist",
		"github.com/weftnet/weft/agent", "github.com/weftnet/weft/mesh", "github.com/weftnet/weft/keys", "github.com/weftnet/weft/source",
	},
	// The HTTP API only reads (through its View); the configuration is
	// flags and their checks.
	"github.com/weftnet/weft/agent/httpapi": {
		"github.com/vishvananda/netlink", "sigs.k8s.io/knftables", "golang.zx2c4.com/wireguard/wgctrl", "golang.zx2c4.com/wireguard/device", "github.com/tailscale/wireguard-go", "github.com/hashicorp/memberlist", "k8s.io/client-go",
		"github.com/weftnet/weft/agent", "github.com/weftnet/weft/mesh", "github.com/weftnet/weft/nft", "github.com/weftnet/weft/keys", "github.com/weftnet/weft/source", "github.com/weftnet/weft/netpol",
	},
	"github.com/weftnet/weft/agent/config": {
		"github.com/vishvananda/netlink", "sigs.k8s.io/knftables", "golang.zx2c4.com/wireguard", "github.com/hashicorp/memberlist", "k8s.io/client-go",
		"github.com/weftnet/weft/mesh", "github.com/weftnet/weft/nft", "github.com/weftnet/weft/source", "github.com/weftnet/weft/netpol",
	},
	"github.com/weftnet/weft/mesh": {"sigs.k8s.io/knftables", "k8s.io/client-go", "github.com/hashicorp/memberlist", "github.com/weftnet/weft/agent", "github.com/weftnet/weft/keys", "github.com/weftnet/weft/nft"},
	"github.com/weftnet/weft/nft":  {"golang.zx2c4.com/wireguard", "k8s.io/client-go", "github.com/hashicorp/memberlist", "github.com/weftnet/weft/agent", "github.com/weftnet/weft/keys", "github.com/weftnet/weft/mesh"},
}

// TestRoomsKeepToTheirConcern: each room's dependencies (transitive) stay
// out of the others' libraries; imports point down to the pure core.
func TestRoomsKeepToTheirConcern(t *testing.T) {
	for pkg, forbidden := range rooms {
		b, err := exec.Command("go", "list", "-json", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		var p struct{ Deps []string }
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		for _, dep := range p.Deps {
			if slices.ContainsFunc(allowedDeps, func(ok string) bool { return within(dep, ok) }) {
				continue
			}
			for _, bad := range forbidden {
				if within(dep, bad) {
					t.Errorf("%s depends on %s, outside its concern", pkg, dep)
				}
			}
		}
	}
}
