// Package deploy holds weft's manifests: deploy/weft.yaml (rendered from the
// Helm chart in deploy/helm/weft by `make manifests`), the kustomize base and
// the kind cluster config. The rendered file is embedded so that the lab
// applies exactly what operators apply.
package deploy

import _ "embed"

// Manifest is deploy/weft.yaml: namespace, service accounts, RBAC, the
// gossip-key Job and the DaemonSet.
//
//go:embed weft.yaml
var Manifest []byte

// ClusterNetworkPolicyCRD is the CRD of ClusterNetworkPolicy
// (policy.networking.k8s.io/v1beta1) as network-policy-api v0.3.0 ships it
// (standard channel), which the chart installs with
// clusterNetworkPolicy.installCRD.
//
//go:embed helm/weft/files/crds/policy.networking.k8s.io_clusternetworkpolicies.yaml
var ClusterNetworkPolicyCRD []byte
