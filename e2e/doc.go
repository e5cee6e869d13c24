// Package e2e holds weft's end-to-end tests. The lab tests (root, network
// namespaces built by internal/netlab, real weft-agent binaries checked from
// outside the way an operator would: ping, captures, wg show, the HTTP API)
// are split by concern into packages that share internal/labtest:
// datapath (the mesh, paths, restarts, captures, egress, external peers),
// kubernetes (Kubernetes mode, RBAC, Services and DNS, the manifests),
// policy (NetworkPolicy truth tables and attacks), pods (the CNI plugin),
// keying (post-quantum pair keys and node key rotation), hardening (attacks
// on every port and input), scale (the scale benchmark and the chaos soak).
// Each package runs in its own process; every lab object carries that
// process's id, so packages run in parallel without colliding. e2e/kind is
// the suite on a real kind cluster (build tag kind); e2e/upstream runs and
// reports the upstream Kubernetes network specs.
package e2e
