// Module controlplane pins the real Kubernetes programs weft runs in its two
// proofs, all from one Kubernetes version (the go.mod's tool directives):
// etcd (go.etcd.io/etcd/server/v3), kube-apiserver and kube-proxy for the
// namespace lab; those plus kubelet, kubeadm, kubectl, kube-controller-manager,
// kube-scheduler and the agnhost test image for the kind node image. It is a
// module of its own so that weft's go.mod stays lean; the Makefile builds it
// with one set of flags, so the lab's binaries and the node image's share the
// Go build cache.
package controlplane
