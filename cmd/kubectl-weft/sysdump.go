package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// logLimit bounds each container log in the tarball.
const logLimit = 16 << 20

// dump collects a tarball's files in memory (bounded by what each source
// may return) and writes them in name order.
type dump struct {
	mu    sync.Mutex
	files map[string][]byte
	notes []string // what could not be collected, in NOTES.txt
}

func (d *dump) add(name string, b []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.files[name] = b
}

func (d *dump) note(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.notes = append(d.notes, fmt.Sprintf(format, args...))
}

func (d *dump) addYAML(name string, v any) {
	b, err := yaml.Marshal(v)
	if err != nil {
		d.note("%s: %v", name, err)
		return
	}
	d.add(name, b)
}

// sysdump writes what a bug report needs into file: per node (a directory
// named after it) the agent's status, metrics, nftables table, WireGuard
// device (private and preshared keys hidden by the agent), its pod and its
// containers' logs (this run's and the last one's); for the cluster the
// Nodes' weft annotations, pod CIDRs and addresses, weft's Events and the
// agents' DaemonSet. It never reads Secrets.
func (c *cluster) sysdump(ctx context.Context, file string, out io.Writer) error {
	d := &dump{files: map[string][]byte{}}
	as, errs, err := c.eachAgent(ctx, "the sysdump", func(ctx context.Context, a agent, base string) error {
		for _, r := range []struct{ path, name string }{
			{"/v1/status", "status.json"}, {"/metrics", "metrics.txt"},
			{"/v1/debug/nftables", "nftables.txt"}, {"/v1/debug/wireguard", "wireguard.txt"},
		} {
			b, err := get(ctx, base, r.path)
			if err != nil {
				d.note("%s: %s: %v", a.node, r.name, err)
				continue
			}
			d.add(a.node+"/"+r.name, b)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for node, err := range errs {
		d.note("%s: the agent's API: %v", node, err)
	}
	for _, a := range as {
		pod := a.pod.DeepCopy()
		pod.ManagedFields = nil
		d.addYAML(a.node+"/pod.yaml", pod)
		var containers []string
		for _, ct := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
			containers = append(containers, ct.Name)
		}
		for _, ct := range containers {
			for _, previous := range []bool{false, true} {
				name := fmt.Sprintf("%s/logs/%s.log", a.node, ct)
				if previous {
					name = fmt.Sprintf("%s/logs/%s.previous.log", a.node, ct)
				}
				limit := int64(logLimit)
				b, err := c.cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: ct, Previous: previous, LimitBytes: &limit}).DoRaw(ctx)
				if err != nil {
					if !previous {
						d.note("%s: logs of %s: %v", a.node, ct, err)
					}
					continue
				}
				d.add(name, b)
			}
		}
	}
	c.clusterObjects(ctx, d)
	if err := d.write(file); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s: %d files from %d nodes", file, len(d.files), len(as))
	if len(d.notes) > 0 {
		fmt.Fprintf(out, "; %d things could not be collected (NOTES.txt)", len(d.notes))
	}
	fmt.Fprintln(out)
	return nil
}

// nodeSummary is what the dump keeps of a Node: weft's annotations, not
// the rest (other controllers' annotations may be sensitive).
type nodeSummary struct {
	Name        string                 `json:"name"`
	Labels      map[string]string      `json:"labels,omitempty"`
	Annotations map[string]string      `json:"weftAnnotations,omitempty"`
	PodCIDRs    []string               `json:"podCIDRs,omitempty"`
	Addresses   []corev1.NodeAddress   `json:"addresses,omitempty"`
	Conditions  []corev1.NodeCondition `json:"conditions,omitempty"`
}

func (c *cluster) clusterObjects(ctx context.Context, d *dump) {
	if nodes, err := c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		d.note("nodes: %v", err)
	} else {
		var out []nodeSummary
		for _, n := range nodes.Items {
			s := nodeSummary{Name: n.Name, Labels: n.Labels, PodCIDRs: n.Spec.PodCIDRs, Addresses: n.Status.Addresses, Conditions: n.Status.Conditions}
			for k, v := range n.Annotations {
				if strings.Contains(k, "weft") {
					if s.Annotations == nil {
						s.Annotations = map[string]string{}
					}
					s.Annotations[k] = v
				}
			}
			out = append(out, s)
		}
		d.addYAML("cluster/nodes.yaml", out)
	}
	if evs, err := c.cs.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "source=weft-agent"}); err != nil {
		d.note("events from weft-agent: %v", err)
	} else {
		d.addYAML("cluster/events-weft-agent.yaml", evs.Items)
	}
	if evs, err := c.cs.CoreV1().Events(c.o.namespace).List(ctx, metav1.ListOptions{}); err != nil {
		d.note("events in %s: %v", c.o.namespace, err)
	} else {
		d.addYAML("cluster/events-"+c.o.namespace+".yaml", evs.Items)
	}
	if dss, err := c.cs.AppsV1().DaemonSets(c.o.namespace).List(ctx, metav1.ListOptions{}); err != nil {
		d.note("daemonsets: %v", err)
	} else {
		for i := range dss.Items {
			dss.Items[i].ManagedFields = nil
		}
		d.addYAML("cluster/daemonsets.yaml", dss.Items)
	}
}

// write writes the tarball (gzip), NOTES.txt first when anything is
// missing; a failed write leaves no partial file.
func (d *dump) write(file string) (err error) {
	f, err := os.CreateTemp(filepath.Dir(file), ".weft-sysdump-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	now := time.Now()
	names := make([]string, 0, len(d.files))
	for n := range d.files {
		names = append(names, n)
	}
	if len(d.notes) > 0 {
		d.files["NOTES.txt"] = []byte(strings.Join(d.notes, "\n") + "\n")
		names = append([]string{"NOTES.txt"}, names...)
	}
	if len(d.notes) > 0 {
		slices.Sort(names[1:])
	} else {
		slices.Sort(names)
	}
	for _, n := range names {
		b := d.files[n]
		if err := tw.WriteHeader(&tar.Header{Name: "weft-sysdump/" + n, Mode: 0o644, Size: int64(len(b)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), file)
}
