package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"

	"github.com/weftnet/weft/internal/ctl"
)

type options struct {
	kubeconfig, context, namespace, selector string
	port                                     int
	timeout                                  time.Duration
}

// cluster is the API server and weft's agents in it.
type cluster struct {
	o      options
	cfg    *rest.Config
	cs     kubernetes.Interface
	errOut io.Writer
}

// connect loads the kubeconfig as kubectl does (flag, $KUBECONFIG, ~/.kube/config).
func connect(o options) (*cluster, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.kubeconfig != "" {
		rules.ExplicitPath = o.kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &cluster{o: o, cfg: cfg, cs: cs}, nil
}

// agent is one node's agent pod.
type agent struct {
	node string
	pod  corev1.Pod
}

// agents lists the agent pods, one per node: during a rollout a node runs
// two, and the newest running one is the one in charge (the old one has
// handed its data plane over).
func (c *cluster) agents(ctx context.Context) ([]agent, error) {
	pods, err := c.cs.CoreV1().Pods(c.o.namespace).List(ctx, metav1.ListOptions{LabelSelector: c.o.selector})
	if err != nil {
		return nil, fmt.Errorf("list weft's agent pods: %w", err)
	}
	byNode := map[string]corev1.Pod{}
	for _, p := range pods.Items {
		if p.Spec.NodeName == "" || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		if old, ok := byNode[p.Spec.NodeName]; !ok || old.CreationTimestamp.Before(&p.CreationTimestamp) {
			byNode[p.Spec.NodeName] = p
		}
	}
	if len(byNode) == 0 {
		return nil, fmt.Errorf("no running weft agent in namespace %s (selector %s)", c.o.namespace, c.o.selector)
	}
	var out []agent
	for n, p := range byNode {
		out = append(out, agent{node: n, pod: p})
	}
	slices.SortFunc(out, func(a, b agent) int { return strings.Compare(a.node, b.node) })
	return out, nil
}

// pick is the agent on node, or the first ready one.
func (c *cluster) pick(ctx context.Context, node string) (agent, error) {
	as, err := c.agents(ctx)
	if err != nil {
		return agent{}, err
	}
	for _, a := range as {
		if a.node == node || (node == "" && podReady(a.pod)) {
			return a, nil
		}
	}
	if node != "" {
		return agent{}, fmt.Errorf("no running weft agent on node %q", node)
	}
	return as[0], nil
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// forward port-forwards a local port to the agent's HTTP port through the
// API server and returns the agent's base URL; stop ends it.
func (c *cluster) forward(ctx context.Context, a agent) (base string, stop func(), err error) {
	transport, upgrader, err := spdy.RoundTripperFor(c.cfg)
	if err != nil {
		return "", nil, err
	}
	url := c.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(a.pod.Namespace).Name(a.pod.Name).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	stopCh, ready := make(chan struct{}), make(chan struct{})
	var fwErr bytes.Buffer
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", c.o.port)}, stopCh, ready, io.Discard, &fwErr)
	if err != nil {
		return "", nil, err
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		return "", nil, fmt.Errorf("port-forward to %s: %v %s", a.pod.Name, err, strings.TrimSpace(fwErr.String()))
	case <-ctx.Done():
		close(stopCh)
		return "", nil, fmt.Errorf("port-forward to %s: %w", a.pod.Name, ctx.Err())
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		close(stopCh)
		return "", nil, fmt.Errorf("port-forward to %s: no local port", a.pod.Name)
	}
	var once sync.Once
	return fmt.Sprintf("http://127.0.0.1:%d", ports[0].Local), func() { once.Do(func() { close(stopCh) }) }, nil
}

// get reads path from the agent at base (limit: 64 MiB).
func get(ctx context.Context, base, path string) ([]byte, error) {
	body, err := ctl.Fetch(ctx, base+path, 64<<20)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	return body, nil
}

func getJSON(ctx context.Context, base, path string, v any) error {
	b, err := get(ctx, base, path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// eachAgent runs f against every agent's API at once, showing progress on
// errOut while it waits; it returns the agents and f's errors by node.
func (c *cluster) eachAgent(ctx context.Context, what string, f func(ctx context.Context, a agent, base string) error) ([]agent, map[string]error, error) {
	as, err := c.agents(ctx)
	if err != nil {
		return nil, nil, err
	}
	errs := make([]error, len(as))
	var wg sync.WaitGroup
	left := make(chan int, len(as))
	stopSpin := spin(c.errOut, fmt.Sprintf("%s from %d agents", what, len(as)), left)
	for i, a := range as {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { left <- 1 }()
			base, stop, err := c.forward(ctx, a)
			if err != nil {
				errs[i] = err
				return
			}
			defer stop()
			errs[i] = f(ctx, a, base)
		}()
	}
	wg.Wait()
	stopSpin()
	byNode := map[string]error{}
	for i, err := range errs {
		if err != nil {
			byNode[as[i].node] = err
		}
	}
	return as, byNode, nil
}

// weftctl runs a weftctl command against one agent.
func (c *cluster) weftctl(ctx context.Context, node string, args []string, out io.Writer) error {
	a, err := c.pick(ctx, node)
	if err != nil {
		return err
	}
	base, stop, err := c.forward(ctx, a)
	if err != nil {
		return err
	}
	defer stop()
	return ctl.Run(append([]string{"--agent", base}, args...), out)
}

// rotateKey runs weftctl rotate-key in node's agent container: the key is
// replaced only through the agent's root-only control socket, so the
// caller needs pods/exec on weft's agent pods (Kubernetes RBAC decides).
func (c *cluster) rotateKey(ctx context.Context, node string, out io.Writer) error {
	a, err := c.pick(ctx, node)
	if err != nil {
		return err
	}
	container := a.pod.Spec.Containers[0].Name
	req := c.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(a.pod.Namespace).Name(a.pod.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: []string{"weftctl", "rotate-key"}, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(c.cfg, http.MethodPost, req.URL())
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: out, Stderr: &stderr}); err != nil {
		return fmt.Errorf("rotate-key on %s (pod %s): %v %s", node, a.pod.Name, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// spin shows what is awaited on w (a line that updates while agents
// answer) until the returned function is called.
func spin(w io.Writer, what string, done <-chan int) (stop func()) {
	if f, ok := w.(*os.File); !ok || !isTerminal(f) {
		// Not a terminal (a log, a pipe): one line, no redrawing.
		fmt.Fprintf(w, "waiting for %s\n", what)
		return func() {}
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		frames := `|/-\`
		n, start := 0, time.Now()
		t := time.NewTicker(150 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			fmt.Fprintf(w, "\r%c waiting for %s: %d answered, %s", frames[i%len(frames)], what, n, time.Since(start).Round(100*time.Millisecond))
			select {
			case <-done:
				n++
			case <-t.C:
			case <-quit:
				fmt.Fprintf(w, "\r\033[K")
				return
			}
		}
	}()
	return func() { close(quit); <-finished }
}
