// Package bench is weft's benchmark harness. In one lab and one run it
// measures weft against what a user would pick instead — the raw underlay,
// kernel VXLAN (flannel's unencrypted default), upstream wireguard-go and Tailscale's fork —
// so that ratios hold on a noisy machine, and writes JSON, a Markdown table
// and SVG plots. It measures; it asserts nothing: the report says whether
// the targets are met.
package bench
