package agent

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/atomicfile"
)

// writeCNIConf writes the conflist atomically, unless it already holds exactly this.
func writeCNIConf(dir string, b []byte) (bool, error) {
	path := filepath.Join(dir, api.ConfFile)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("cni conf dir: %w", err)
	}
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}
