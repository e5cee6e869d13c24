package mesh

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/weftnet/weft/internal/atomicfile"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// PrivateKeyFile is the name of the node's WireGuard private key inside the state directory.
const PrivateKeyFile = "private.key"

// maxKeyFileSize bounds what we read from a key file; a base64 key is 44 bytes.
const maxKeyFileSize = 128

// LoadOrCreatePrivateKey returns the key kept at path, generating and storing it
// (mode 0600) on first use. A file readable by group or others, or one that does
// not hold exactly one base64 key of 32 bytes, is an error: weft never silently
// replaces an identity the rest of the mesh already knows.
func LoadOrCreatePrivateKey(path string) (wgtypes.Key, error) {
	k, err := ReadKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("generate private key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return wgtypes.Key{}, fmt.Errorf("create state dir: %w", err)
	}
	if err := atomicfile.Write(path, []byte(k.String()+"\n"), 0o600); err != nil {
		return wgtypes.Key{}, fmt.Errorf("store private key: %w", err)
	}
	return k, nil
}

// ReadKeyFile reads a 32-byte key in base64 (the format of `wg genkey`) from a
// file that only its owner may read.
func ReadKeyFile(path string) (wgtypes.Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return wgtypes.Key{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return wgtypes.Key{}, err
	}
	if !st.Mode().IsRegular() {
		return wgtypes.Key{}, fmt.Errorf("key file %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return wgtypes.Key{}, fmt.Errorf("key file %s: mode %04o lets others read it; chmod 600 it", path, perm)
	}
	buf := make([]byte, maxKeyFileSize+1)
	n, _ := io.ReadFull(f, buf)
	k, err := ParseKey(buf[:n])
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// ParseKey reads a key file's content: one base64 key of 32 bytes, with
// surrounding white space.
func ParseKey(b []byte) (wgtypes.Key, error) {
	if len(b) > maxKeyFileSize {
		return wgtypes.Key{}, errors.New("too large for a base64 key of 32 bytes")
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		return wgtypes.Key{}, errors.New("want base64 of 32 bytes (as from `wg genkey`)")
	}
	return k, nil
}
