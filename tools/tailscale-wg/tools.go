//go:build tools

// Package tools pins Tailscale's fork of wireguard-go, the second userspace
// anchor of `make bench` (built as bin/wireguard-go-tailscale from the
// fork's own main package, as bin/wireguard-go is from upstream's).
package tools

import _ "github.com/tailscale/wireguard-go/device"
