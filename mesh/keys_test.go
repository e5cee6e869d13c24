package mesh

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestLoadOrCreatePrivateKeyKeepsIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", PrivateKeyFile)
	k1, err := LoadOrCreatePrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	if dst, _ := os.Stat(filepath.Dir(path)); dst.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %04o, want 0700", dst.Mode().Perm())
	}
	k2, err := LoadOrCreatePrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if k1 != k2 {
		t.Fatal("second start generated a new key: the node's identity changed")
	}
	if k1 == (wgtypes.Key{}) {
		t.Fatal("generated an all-zero key")
	}
}

func TestReadKeyFileRejects(t *testing.T) {
	good, _ := wgtypes.GeneratePrivateKey()
	cases := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
	}{
		{"readable by group", good.String(), 0o640, "mode 0640"},
		{"readable by all", good.String(), 0o644, "mode 0644"},
		{"too short", "c2hvcnQ=", 0o600, "want base64 of 32 bytes"},
		{"not base64", strings.Repeat("!", 44), 0o600, "want base64 of 32 bytes"},
		{"hex instead of base64", strings.Repeat("ab", 32), 0o600, "want base64 of 32 bytes"},
		{"huge", strings.Repeat("A", 4096), 0o600, "too large"},
		{"empty", "", 0o600, "want base64 of 32 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "k")
			if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, tc.mode)
			_, err := ReadKeyFile(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), good.String()) {
				t.Fatal("error quotes the key")
			}
		})
	}
	t.Run("accepts wg genkey format", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "k")
		os.WriteFile(p, []byte(good.String()+"\n"), 0o600)
		k, err := ReadKeyFile(p)
		if err != nil || k != good {
			t.Fatalf("ReadKeyFile = %v, %v", k, err)
		}
	})
}
