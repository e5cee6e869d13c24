package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// DeviceConfig says how to bring up the tunnel device.
type DeviceConfig struct {
	Name       string       // interface name, e.g. weft0
	MTU        int          // tunnel MTU
	RunDir     string       // the UAPI socket is <RunDir>/<Name>.sock
	PrivateKey wgtypes.Key  // never logged
	ListenPort int          // UDP port of the WireGuard endpoint
	Logger     *slog.Logger // nil: slog.Default()
	// Verbose makes wireguard-go log at its verbose level (each UAPI change, handshakes).
	Verbose bool
	// TooBig is told the endpoint of each send that was over the path MTU
	// (see pathBind); nil: nobody listens.
	TooBig func(netip.Addr)
	// TUN, when set, is the interface's open TUN descriptor, handed over by
	// the agent that ran it (package handover); OpenDevice owns it then.
	TUN *os.File
	// Peers, when set, are written to the device before it comes up (as
	// Device.PeerConfig returned them): a handed-over device starts its
	// handshakes at once, before the agent's first reconcile.
	Peers string
	// OnDemand prepares the bind for on-demand peers (Mesh.EnableOnDemand):
	// a receive function through which held handshakes come back.
	OnDemand bool
	// Relay, when set, makes the device a successor (relay.go): it shakes
	// hands through the old agent's socket over this relay and does not
	// read the TUN, bind the port or serve UAPI until Take.
	Relay *os.File
}

// Device is a running wireguard-go device on a persistent TUN interface. The
// interface, its addresses and routes outlive the process, so a restarted
// agent re-attaches to them and traffic stops only until the next handshake.
type Device struct {
	name string
	link netlink.Link
	dev  *device.Device
	tun  tun.Device
	bind *pathBind
	gate *gatedTUN    // the device's reads of the TUN: held until Take on a successor, stopped by Release
	od   *onDemand    // on-demand peers (Mesh.EnableOnDemand), nil: off
	succ bool         // a successor's device, until Take
	port int          // the WireGuard port
	uapi net.Listener // nil until Take on a successor

	closeOnce sync.Once
	released  atomic.Bool // Release ran: the UAPI socket's name may be a successor's
	// letGo is closed when a Release that kept the socket has closed it
	// (the successor said bound, or shareTimeout); nil: no such Release.
	letGo  atomic.Pointer[chan struct{}]
	sock   string
	logger *slog.Logger
}

// OpenDevice creates (or re-attaches to) the TUN interface and starts
// wireguard-go on it. On error nothing it created is left behind.
func OpenDevice(cfg DeviceConfig) (_ *Device, err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var tdev tun.Device
	defer func() {
		if err != nil && tdev == nil && cfg.TUN != nil {
			cfg.TUN.Close() // ours until tdev holds it
		}
	}()
	bind := newPathBind(cfg.TooBig)
	bind.injecting = cfg.OnDemand
	if cfg.Relay != nil {
		r, err := newInRelay(cfg.Relay, bind.Bind)
		if err != nil {
			return nil, err
		}
		bind.in.Store(r)
		defer func() {
			if err != nil {
				r.close()
			}
		}()
	} else if err := CheckPortFree(cfg.ListenPort); err != nil {
		return nil, err
	}
	sock := filepath.Join(cfg.RunDir, cfg.Name+".sock")
	if cfg.Relay == nil {
		if err := claimSocket(sock); err != nil {
			return nil, err
		}
	}
	_, existedErr := netlink.LinkByName(cfg.Name)
	existed := existedErr == nil

	if cfg.TUN != nil {
		tdev, err = tun.CreateTUNFromFile(cfg.TUN, cfg.MTU)
	} else {
		tdev, err = tun.CreateTUN(cfg.Name, cfg.MTU)
	}
	if err != nil {
		return nil, fmt.Errorf("create tun %s: %w", cfg.Name, err)
	}
	if name, err := tdev.Name(); err != nil || name != cfg.Name {
		_ = tdev.Close() // a handed-over descriptor of another interface
		return nil, fmt.Errorf("tun %s: the descriptor is for %q (%v)", cfg.Name, name, err)
	}
	defer func() {
		if err != nil {
			_ = tdev.Close() // undoing a failed open
			if !existed {
				if l, e := netlink.LinkByName(cfg.Name); e == nil {
					_ = netlink.LinkDel(l)
				}
			}
		}
	}()
	if nt, ok := tdev.(*tun.NativeTun); ok {
		// Keep the interface (and so its addresses and routes) when we exit.
		if err := unix.IoctlSetInt(int(nt.File().Fd()), unix.TUNSETPERSIST, 1); err != nil {
			return nil, fmt.Errorf("make tun %s persistent: %w", cfg.Name, err)
		}
	}
	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("find link %s: %w", cfg.Name, err)
	}
	if link.Attrs().MTU != cfg.MTU {
		if err := netlink.LinkSetMTU(link, cfg.MTU); err != nil {
			return nil, fmt.Errorf("set mtu %d on %s: %w", cfg.MTU, cfg.Name, err)
		}
	}

	level := device.LogLevelError
	if cfg.Verbose {
		level = device.LogLevelVerbose
	}
	wgLog := &device.Logger{
		Verbosef: device.DiscardLogf,
		Errorf: func(format string, args ...any) {
			log.Error(fmt.Sprintf(format, args...), "component", "wireguard")
		},
	}
	if level == device.LogLevelVerbose {
		wgLog.Verbosef = func(format string, args ...any) {
			log.Debug(fmt.Sprintf(format, args...), "component", "wireguard")
		}
	}
	gate := newGatedTUN(tdev)
	tdev = gate
	succ := cfg.Relay != nil
	if !succ {
		gate.Open()
	}
	dev := device.NewDevice(tdev, bind, wgLog)
	defer func() {
		if err != nil {
			dev.Close()
		}
	}()
	conf := fmt.Sprintf("private_key=%x\nlisten_port=%d\n", cfg.PrivateKey[:], cfg.ListenPort)
	if err := dev.IpcSet(conf); err != nil {
		return nil, fmt.Errorf("configure device: %v", redactKey(err))
	}
	if cfg.Peers != "" {
		if err := dev.IpcSet(cfg.Peers); err != nil {
			return nil, fmt.Errorf("configure handed-over peers: %v", redactKey(err))
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set %s up: %w", cfg.Name, err)
	}
	if err := dev.Up(); err != nil {
		return nil, fmt.Errorf("bring up device on port %d: %w", cfg.ListenPort, err)
	}
	d := &Device{name: cfg.Name, link: link, dev: dev, tun: tdev, bind: bind, gate: gate, succ: succ, port: cfg.ListenPort, sock: sock, logger: log}
	if !succ {
		if err := d.serve(); err != nil {
			return nil, err
		}
	}
	log.Info("device up", "interface", cfg.Name, "mtu", cfg.MTU, "listen_port", cfg.ListenPort,
		"reattached", existed, "successor", succ, "batch", tdev.BatchSize(), "uapi", sock)
	return d, nil
}

// serve opens the UAPI socket (wgctrl and wg(8) find the device there).
func (d *Device) serve() error {
	ln, err := listenUAPI(d.sock)
	if err != nil {
		return err
	}
	d.uapi = ln
	go d.serveUAPI()
	return nil
}

// Name is the interface name.
func (d *Device) Name() string { return d.name }

// LinkIndex is the kernel's index of the tunnel interface.
func (d *Device) LinkIndex() int { return d.link.Attrs().Index }

// SetPrivateKey replaces the device's key. wireguard-go ends every session
// at once; each peer's next packet starts a handshake under the new key.
func (d *Device) SetPrivateKey(k wgtypes.Key) error {
	if err := d.dev.IpcSet(fmt.Sprintf("private_key=%x\n", k[:])); err != nil {
		return fmt.Errorf("set private key: %v", redactKey(err))
	}
	if d.od != nil {
		d.od.setKey(k)
	}
	return nil
}

// Close stops wireguard-go and the UAPI socket. The persistent interface stays.
func (d *Device) Close() {
	d.closeOnce.Do(d.close)
}

func (d *Device) close() {
	if c := d.letGo.Load(); c != nil {
		// Released with the socket kept for the successor: closing the
		// device now would close it too, and the port would be bound by
		// nobody until the successor binds (what arrives meanwhile is
		// lost, and the successor's "bound" finds the relay closed).
		<-*c
	}
	d.EndRelay()
	if d.uapi != nil && !d.released.Load() {
		d.uapi.Close()
		os.Remove(d.sock)
	}
	d.dev.Close()
}

// Done is closed when the device stops (for instance when its interface is deleted).
func (d *Device) Done() <-chan struct{} { return d.dev.Wait() }

func (d *Device) serveUAPI() {
	for {
		c, err := d.uapi.Accept()
		if err != nil {
			return
		}
		go d.dev.IpcHandle(c)
	}
}

// DeviceServed reports whether a live process serves the named device's
// UAPI socket in runDir (an agent runs it).
func DeviceServed(runDir, name string) bool {
	c, err := net.Dial("unix", filepath.Join(runDir, name+".sock"))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// claimSocket removes a stale UAPI socket left by a killed agent, and refuses
// to start when another live process answers on it.
func claimSocket(sock string) error {
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		return fmt.Errorf("create run dir: %w", err)
	}
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		return fmt.Errorf("uapi socket %s is in use: another agent runs this interface", sock)
	}
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", sock, err)
	}
	return nil
}

func listenUAPI(sock string) (net.Listener, error) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listen on uapi socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, nil
}

// CheckPortFree gives a clear error before anything is created when the
// WireGuard port is taken, rather than a half-started device.
func CheckPortFree(port int) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("listen port %d: out of range", port)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("listen port %d/udp is already in use", port)
		}
		return fmt.Errorf("listen port %d/udp: %w", port, err)
	}
	_ = c.Close() // only a probe
	return nil
}

// redactKey keeps a private key out of an error that might quote its input.
func redactKey(err error) string {
	s := err.Error()
	if i := strings.Index(s, "private_key"); i >= 0 {
		return s[:i] + "private_key=<redacted>"
	}
	return s
}
