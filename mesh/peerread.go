package mesh

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Reading the device in this process. wgctrl reads a device through its
// UAPI socket: it lists the socket directory, connects, and the device
// answers on a goroutine of its own, every time. The key manager reads one
// peer per exchange (WritePeerKey, LastHandshake), and at a working set's
// exchange rate those whole readings were a fifth of the agent's garbage at
// 5000 Nodes (README, "Memory at 5000"); the rest loop reads the device
// every few seconds at rest. peer and Peers read the same text from the
// device in this process: peer parses the one block it wants.

// peer reads pub from the device, its counters adjusted as Peers adjusts
// them; false if the device has no such peer. After Release the UAPI
// socket's name may be a successor's, and it reads through wgctrl, as
// Peers does.
func (m *Mesh) peer(pub wgtypes.Key) (wgtypes.Peer, bool, error) {
	if m.dev.released.Load() {
		peers, err := m.Peers()
		if err != nil {
			return wgtypes.Peer{}, false, err
		}
		for _, p := range peers {
			if p.PublicKey == pub {
				return p, true, nil
			}
		}
		return wgtypes.Peer{}, false, nil
	}
	r := peerReader{want: pub}
	if err := m.dev.dev.IpcGetOperation(&r); err != nil {
		return wgtypes.Peer{}, false, fmt.Errorf("read device %s: %w", m.dev.name, err)
	}
	if r.err != nil || !r.found {
		return wgtypes.Peer{}, false, r.err
	}
	m.counts.adjustOne(&r.peer)
	return r.peer, true, nil
}

// peerReader is the writer the device writes its UAPI text to: it keeps
// the block of one peer.
type peerReader struct {
	want  wgtypes.Key
	peer  wgtypes.Peer
	found bool
	err   error
}

func (r *peerReader) Write(b []byte) (int, error) {
	r.peer, r.found, r.err = readPeer(b, r.want)
	return len(b), nil
}

// peersReader is the writer the device writes its UAPI text to: it keeps
// every peer's block.
type peersReader struct {
	peers []wgtypes.Peer
	err   error
}

func (r *peersReader) Write(b []byte) (int, error) {
	r.peers, r.err = readPeers(b)
	return len(b), nil
}

// readPeer parses pub's block out of a UAPI get's text (lines key=value; a
// peer's block runs from its public_key line to the next).
func readPeer(text []byte, pub wgtypes.Key) (wgtypes.Peer, bool, error) {
	var line [len("public_key=") + 2*wgtypes.KeyLen + 1]byte
	n := copy(line[:], "public_key=")
	hex.Encode(line[n:], pub[:])
	line[len(line)-1] = '\n'
	i := 0
	for {
		j := bytes.Index(text[i:], line[:])
		if j < 0 {
			return wgtypes.Peer{}, false, nil
		}
		i += j
		if i == 0 || text[i-1] == '\n' {
			break
		}
		i++
	}
	p, _, err := peerBlock(text[i+len(line):], pub)
	if err != nil {
		return wgtypes.Peer{}, false, err
	}
	return p, true, nil
}

// readPeers parses every peer's block out of a UAPI get's text.
func readPeers(text []byte) ([]wgtypes.Peer, error) {
	var out []wgtypes.Peer
	rest := text
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte{'\n'})
		k, v, _ := bytes.Cut(l, []byte{'='})
		if string(k) != "public_key" {
			continue // the device's own lines come first
		}
		var pub wgtypes.Key
		if n, err := hex.Decode(pub[:], v); err != nil || n != len(pub) {
			return nil, fmt.Errorf("read peers: public_key %q", v)
		}
		p, n, err := peerBlock(rest, pub)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
		rest = rest[n:]
	}
	return out, nil
}

// peerBlock parses the lines of pub's block that follow its public_key
// line, up to the next peer's, and says how many bytes of text it read.
func peerBlock(text []byte, pub wgtypes.Key) (wgtypes.Peer, int, error) {
	p := wgtypes.Peer{PublicKey: pub}
	var sec, nsec int64
	rest := text
	for len(rest) > 0 {
		l, after, _ := bytes.Cut(rest, []byte{'\n'})
		k, v, _ := bytes.Cut(l, []byte{'='})
		if string(k) == "public_key" {
			break // the next peer's block
		}
		rest = after
		var err error
		switch string(k) {
		case "preshared_key":
			_, err = hex.Decode(p.PresharedKey[:], v)
		case "endpoint":
			var ap netip.AddrPort
			if ap, err = netip.ParseAddrPort(string(v)); err == nil {
				p.Endpoint = udpAddr(ap)
			}
		case "last_handshake_time_sec":
			sec, err = strconv.ParseInt(string(v), 10, 64)
		case "last_handshake_time_nsec":
			nsec, err = strconv.ParseInt(string(v), 10, 64)
		case "tx_bytes":
			p.TransmitBytes, err = strconv.ParseInt(string(v), 10, 64)
		case "rx_bytes":
			p.ReceiveBytes, err = strconv.ParseInt(string(v), 10, 64)
		case "persistent_keepalive_interval":
			var s int64
			s, err = strconv.ParseInt(string(v), 10, 64)
			p.PersistentKeepaliveInterval = time.Duration(s) * time.Second
		case "allowed_ip":
			var pr netip.Prefix
			if pr, err = netip.ParsePrefix(string(v)); err == nil {
				p.AllowedIPs = append(p.AllowedIPs, net.IPNet{IP: pr.Addr().AsSlice(), Mask: net.CIDRMask(pr.Bits(), pr.Addr().BitLen())})
			}
		case "protocol_version":
			p.ProtocolVersion, err = strconv.Atoi(string(v))
		}
		if err != nil {
			return wgtypes.Peer{}, 0, fmt.Errorf("read peer %s: %s: %w", pub, k, err)
		}
	}
	if sec != 0 || nsec != 0 {
		p.LastHandshakeTime = time.Unix(sec, nsec)
	}
	return p, len(text) - len(rest), nil
}

// Handshake starts a handshake with pub now, unless the device sent one
// within WireGuard's 5-s limit (RekeyTimeout): then its retransmission, or
// the session's next rekey, makes it. A peer the device does not hold, or
// a device a successor has taken over, is left alone.
func (m *Mesh) Handshake(pub wgtypes.Key) {
	if m.dev.released.Load() {
		return
	}
	if p := m.dev.dev.LookupPeer(device.NoisePublicKey(pub)); p != nil {
		if err := p.SendHandshakeInitiation(false); err != nil {
			m.dev.logger.Debug("cannot send a handshake initiation; the next packet starts one", "peer", pub, "err", err)
		}
	}
}
