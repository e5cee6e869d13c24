package install

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCNI(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "opt", "cni", "bin")
	os.WriteFile(filepath.Join(src, "weft-cni"), []byte("new plugin"), 0o644)
	os.MkdirAll(dst, 0o755)
	os.WriteFile(filepath.Join(dst, "weft-cni"), []byte("old"), 0o755)
	if err := CNI(src, dst, []string{"weft-cni"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dst, "weft-cni"))
	st, _ := os.Stat(filepath.Join(dst, "weft-cni"))
	if string(b) != "new plugin" || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed %q mode %v", b, st.Mode())
	}
	if err := CNI(src, dst, []string{"missing"}); err == nil {
		t.Fatal("a missing plugin was not reported")
	}
	ents, _ := os.ReadDir(dst)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}
