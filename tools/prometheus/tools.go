//go:build tools

// Package tools pins the Prometheus module whose promtool checks weft's
// alerting rules (`promtool test rules`) and whose server scrapes the kind
// cluster's agents. A module of its own, so Prometheus' dependencies never
// move weft's.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
