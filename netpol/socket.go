package netpol

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/httpserve"
)

// ServeSocket serves weft-cni's requests on the agent's Unix socket (root
// only) until the returned function is called.
func (n *Controller) ServeSocket() (func(), error) {
	ln, err := httpserve.ListenRootOnly(filepath.Join(n.stateDir, api.AgentSocket))
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
	srv := httpserve.NewServer(mux)
	go httpserve.Serve(srv, ln, n.log, "agent socket")
	return func() { srv.Close(); os.Remove(ln.Addr().String()) }, nil
}
