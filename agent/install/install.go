package install

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CNI copies the named plugin binaries from dir src into dst (the
// host's /opt/cni/bin), each through a temporary file and a rename, so a
// runtime never executes a half-copied plugin.
func CNI(src, dst string, names []string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, name := range names {
		if err := copyExecutable(filepath.Join(src, name), filepath.Join(dst, name)); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
	}
	return nil
}

func copyExecutable(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(to), "."+filepath.Base(to)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), to)
}

// SecretCreator creates a Secret (kubeclient.Clients does).
type SecretCreator interface {
	CreateSecret(ctx context.Context, s *corev1.Secret) error
}

// GossipKeySecretKey is the data key of the gossip-key Secret.
const GossipKeySecretKey = "key"

// GossipKey creates Secret ns/name holding a fresh gossip key (base64
// of 32 random bytes, the format of `wg genkey`) unless it exists. An
// existing Secret is never changed: rotating the key is an operator's act.
func GossipKey(ctx context.Context, client SecretCreator, ns, name string) (created bool, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return false, err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": "weft"}},
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{GossipKeySecretKey: base64.StdEncoding.EncodeToString(b)},
	}
	err = client.CreateSecret(ctx, s)
	if apierrors.IsAlreadyExists(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create secret %s/%s: %w", ns, name, err)
	}
	return true, nil
}
