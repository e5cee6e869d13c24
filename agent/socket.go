package agent

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/api"
)

// serveSocket serves weft-cni's requests on the agent's Unix socket.
func (n *netPolicy) serveSocket() (func(), error) {
	ln, err := listenRootOnly(filepath.Join(n.stateDir, api.AgentSocket))
	if err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	mux := http.NewServeMux()
	decode := func(w http.ResponseWriter, r *http.Request) (api.Attachment, bool) {
		var a api.Attachment
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAttachmentBody)).Decode(&a); err != nil {
			http.Error(w, "attachment: "+err.Error(), http.StatusBadRequest)
			return a, false
		}
		return a, true
	}
	mux.HandleFunc("POST "+api.AttachmentsPath, func(w http.ResponseWriter, r *http.Request) {
		a, ok := decode(w, r)
		if !ok {
			return
		}
		if err := n.attach(r.Context(), a); err != nil {
			n.log.Warn("attachment refused", "container", a.ContainerID, "pod", a.Namespace+"/"+a.Name, "err", err)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE "+api.AttachmentsPath, func(w http.ResponseWriter, r *http.Request) {
		a, ok := decode(w, r)
		if !ok {
			return
		}
		n.detach(a)
		w.WriteHeader(http.StatusNoContent)
	})
	srv := newHTTPServer(mux)
	go serve(srv, ln, n.log, "agent socket")
	return func() { srv.Close(); os.Remove(ln.Addr().String()) }, nil
}

// listenRootOnly listens on the Unix socket path that only root can reach.
// The directory is the gate: root only, before the socket exists, so there
// is no moment when another user could connect; a failed chmod fails.
func listenRootOnly(path string) (net.Listener, error) {
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
	return ln, nil
}
