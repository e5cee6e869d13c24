module github.com/weftnet/weft/tools/tailscale-wg

go 1.26.8

require github.com/tailscale/wireguard-go v0.0.0-20260715223240-2e01ba5b00f0

require (
	golang.org/x/crypto v0.50.0 // indirect
	golang.org/x/net v0.53.0 // indirect
	golang.org/x/sys v0.43.0 // indirect
	golang.zx2c4.com/wintun v0.0.0-20230126152724-0fa3db229ce2 // indirect
)
