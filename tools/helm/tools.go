//go:build tools

// Module helm pins the Helm CLI that renders deploy/helm/weft into
// deploy/weft.yaml (make manifests) and checks they match (make test).
package tools

import _ "helm.sh/helm/v3/cmd/helm"
