// Command weft-cni is weft's CNI plugin (type "weft-cni"), installed as
// /opt/cni/bin/weft-cni and called by the container runtime for each pod
// sandbox.
package main

import "github.com/weftnet/weft/cni"

func main() { cni.Main("weft-cni: attaches pods to the weft mesh") }
