// Command weftctl talks to a running weft-agent over its HTTP API.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/weftnet/weft/internal/ctl"
)

func main() {
	err := ctl.Run(os.Args[1:], os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return // the usage is printed
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "weftctl: %v\n", err)
		os.Exit(1)
	}
}
