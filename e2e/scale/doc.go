// Package scale holds the scale benchmark (make bench-scale: thousands of
// Node objects, a few real agents) and the chaos soak (make soak; make test
// runs it for 40 s).
package scale
