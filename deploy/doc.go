// Package deploy holds weft's manifests. The files are embedded so that
// tests apply exactly what operators apply.
package deploy

import _ "embed"

// RBAC is the Namespace, ServiceAccount, ClusterRole and binding weft-agent runs under.
//
//go:embed rbac.yaml
var RBAC []byte
