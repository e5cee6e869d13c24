// Module controlplane builds the real Kubernetes programs weft's lab runs:
// etcd (from go.etcd.io/etcd/server/v3's embed package), kube-apiserver and
// kube-proxy (from k8s.io/kubernetes). It is a module of its own so that
// weft's go.mod stays lean; the Makefile builds it once and caches the
// binaries.
package controlplane
