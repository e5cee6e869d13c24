// Package kubernetes tests weft in Kubernetes mode against a real
// kube-apiserver: Node annotations and conditions, the node-scoped RBAC,
// Services and DNS through the real kube-proxy and CoreDNS, and that every
// shipped manifest is valid.
package kubernetes
