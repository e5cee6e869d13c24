//go:build tools

// Package tools pins the reference CNI plugins weft ships beside weft-cni
// (portmap for hostPort, loopback) and that the lab and bench build.
package tools

import (
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
	_ "github.com/containernetworking/plugins/plugins/main/ptp"
	_ "github.com/containernetworking/plugins/plugins/meta/portmap"
)
