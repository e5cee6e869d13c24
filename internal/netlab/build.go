package netlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// CNIPlugins are the reference plugins built beside weft's binaries (the
// Makefile's CNI_PLUGINS).
var CNIPlugins = []string{
	"github.com/containernetworking/plugins/plugins/meta/portmap",
	"github.com/containernetworking/plugins/plugins/main/loopback",
	"github.com/containernetworking/plugins/plugins/main/ptp",
	"github.com/containernetworking/plugins/plugins/ipam/host-local",
}

var build struct {
	once sync.Once
	dir  string
	err  error
	out  string
}

// Binaries returns a directory holding weft's binaries: $WEFT_BIN_DIR when
// set (make test builds them once), else a fresh `go build ./cmd/...` made
// once per process.
func Binaries() (string, error) {
	if d := os.Getenv("WEFT_BIN_DIR"); d != "" {
		return d, nil
	}
	build.once.Do(func() {
		root, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			build.err = err
			return
		}
		dir, err := os.MkdirTemp("", "weft-bin-")
		if err != nil {
			build.err = err
			return
		}
		cmd := exec.Command("go", append([]string{"build", "-o", dir + "/", "./cmd/..."}, CNIPlugins...)...)
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
		out, err := cmd.CombinedOutput()
		build.dir, build.err, build.out = dir, err, string(out)
	})
	if build.err != nil {
		return "", fmt.Errorf("build weft binaries: %v\n%s", build.err, build.out)
	}
	return build.dir, nil
}
