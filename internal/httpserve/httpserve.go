// Package httpserve is how weft's programs serve HTTP to whoever can reach
// them: every timeout set, Unix sockets that only root can reach (the
// per-source cap on connections is package connlimit).
package httpserve

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The HTTP server's limits. Anything that reaches the node address (every
// pod, unless a policy says otherwise) can connect, so each connection is
// bounded in time and header size, and one source may hold only a few.
const (
	MaxConnsPerSource = 16
	maxHeaderBytes    = 16 << 10
)

// NewServer is the agents' HTTP server with every timeout set: a
// connection that sends nothing, stalls a request or idles is closed.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}

// Serve runs srv on ln until it is closed, and logs why it stopped otherwise.
func Serve(srv *http.Server, ln net.Listener, log *slog.Logger, what string) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error(what+" server stopped", "err", err)
	}
}

// ListenRootOnly listens on the Unix socket path that only root can reach.
// The directory is the gate: root only, before the socket exists, so there
// is no moment when another user could connect; a failed chmod fails.
func ListenRootOnly(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	os.Remove(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	// Closing does not remove the file: a successor may serve the same
	// socket (handed over); the caller removes it when nobody does.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	return ln, nil
}
