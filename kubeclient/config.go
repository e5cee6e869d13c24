package kubeclient

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// PeerGVR is the Peer custom resource (deploy/helm/weft/templates/peer-crd.yaml).
var PeerGVR = schema.GroupVersionResource{Group: "weft.dev", Version: "v1alpha1", Resource: "peers"}

// resync is how often the informers replay their caches to the handlers.
const resync = 10 * time.Minute

// WatchConfig is cfg for informers: without the client timeout, which
// Go's HTTP client applies to a whole response, so every watch would be
// cut after 10 s and started again (at a thousand nodes, hundreds of
// requests a second to the API server for nothing).
func WatchConfig(cfg *rest.Config) *rest.Config {
	w := rest.CopyConfig(cfg)
	w.Timeout = 0
	return w
}

// RESTConfig is the agent's client configuration (see NewClients).
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	cfg.UserAgent = "weft-agent"
	cfg.Timeout = 10 * time.Second
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countRequests{rt} })
	return cfg, nil
}

// APIRequests counts the agent's requests to the API server by verb (a
// watch is one request however long it runs): what the agent costs the
// control plane, weft_api_requests_total.
var APIRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "weft_api_requests_total", Help: "Requests to the Kubernetes API server, by HTTP method (get: a get or a list) or watch.",
}, []string{"verb"})

// APIReceived counts the bytes of the API server's answers the agent read,
// by the same verbs: at thousands of Nodes the watch's share is what every
// Node change costs every agent, weft_api_received_bytes_total.
var APIReceived = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "weft_api_received_bytes_total", Help: "Bytes of the Kubernetes API server's response bodies read (after any decompression), by HTTP method (get: a get or a list) or watch.",
}, []string{"verb"})

type countRequests struct{ next http.RoundTripper }

func (c countRequests) RoundTrip(r *http.Request) (*http.Response, error) {
	verb := strings.ToLower(r.Method)
	if q := r.URL.Query(); verb == "get" && (q.Get("watch") == "true" || q.Get("watch") == "1") {
		verb = "watch"
	}
	APIRequests.WithLabelValues(verb).Inc()
	resp, err := c.next.RoundTrip(r)
	if err == nil && resp.Body != nil {
		resp.Body = countedBody{resp.Body, APIReceived.WithLabelValues(verb)}
	}
	return resp, err
}

// countedBody adds what is read from a response body to a counter.
type countedBody struct {
	io.ReadCloser
	n prometheus.Counter
}

func (b countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(float64(n))
	return n, err
}

// WrappedRoundTripper lets client-go reach the transport underneath (to
// cancel requests).
func (c countRequests) WrappedRoundTripper() http.RoundTripper { return c.next }
