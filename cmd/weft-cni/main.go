// Command weft-cni is weft's CNI plugin (type "weft-cni").
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "weft-cni: not implemented yet (see issue: weft-cni)")
	os.Exit(1)
}
