// Package labtest is the lab tests' shared harness over internal/netlab:
// a Cluster of real weft-agent processes in network namespaces (and a
// KubeCluster with a real kube-apiserver), pods attached by weft-cni, the
// agents' metrics (the one Prometheus text parser, Metrics), Eventually,
// streams, captures on the underlay, and the wg and weftctl views an
// operator has. The lab test packages under e2e/ use it; they need root.
package labtest
