package netpol

import (
	"encoding/json"
	"net"
	"net/http"

	"github.com/weftnet/weft/api"
	"github.com/weftnet/weft/internal/httpserve"
)

// ServeSocket serves weft-cni's requests on ln, the agent's Unix socket
// (<state-dir>/agent.sock, root only), until the returned function is
// called. The agent owns the socket: it may have come from a predecessor,
// and it stays for a successor.
func (n *Controller) ServeSocket(ln net.Listener) func() {
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
	return func() { srv.Close() }
}
