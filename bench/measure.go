package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Throughput is one iperf3 run.
type Throughput struct {
	BitsPerSecond float64 `json:"bitsPerSecond"`
	LostPercent   float64 `json:"lostPercent,omitempty"`
	JitterMs      float64 `json:"jitterMs,omitempty"`
	CPUSeconds    float64 `json:"cpuSeconds,omitempty"`
	// RSSMiB: the resident memory of the path's userspace processes (both
	// ends) right after the run; 0 for kernel paths.
	RSSMiB float64 `json:"rssMiB,omitempty"`
	Bytes  float64 `json:"bytes"`
}

func nsCommand(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// clientCommand runs a program on the path's client side: on CPU 0 when
// the lab pins (see Lab.pin).
func (p *Path) clientCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return p.onCPU(ctx, p.ClientNS, clientCPU, name, args...)
}

// serverCommand runs a program on the path's server side: on CPU 1 when
// the lab pins.
func (p *Path) serverCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return p.onCPU(ctx, p.ServerNS, serverCPU, name, args...)
}

func (p *Path) onCPU(ctx context.Context, ns string, cpu int, name string, args ...string) *exec.Cmd {
	if !p.pinned {
		return nsCommand(ctx, ns, name, args...)
	}
	return nsCommand(ctx, ns, "taskset", append([]string{"-c", fmt.Sprint(cpu), name}, args...)...)
}

// Iperf runs one iperf3 client against the path's server (which must be
// running, or start within a few seconds) and returns what the receiver saw.
func Iperf(ctx context.Context, p *Path, d time.Duration, extra ...string) (Throughput, error) {
	args := append([]string{"-c", p.Server.String(), "-t", fmt.Sprint(int(d.Seconds())), "-J"}, extra...)
	var lastErr string
	for attempt := 0; attempt < 30; attempt++ {
		cpu0, hasCPU := p.cpuSeconds()
		out, _ := p.clientCommand(ctx, "iperf3", args...).Output()
		cpu1, _ := p.cpuSeconds()
		if ctx.Err() != nil {
			return Throughput{}, ctx.Err()
		}
		var r iperfJSON
		if err := json.Unmarshal(out, &r); err != nil {
			return Throughput{}, fmt.Errorf("iperf3 on %s: %v", p.Name, err)
		}
		if r.Error != "" {
			lastErr = r.Error
			time.Sleep(200 * time.Millisecond) // the server may not listen yet
			continue
		}
		t := Throughput{BitsPerSecond: r.End.SumReceived.BitsPerSecond, Bytes: r.End.SumReceived.Bytes}
		if slices.Contains(extra, "-u") {
			t = Throughput{BitsPerSecond: r.End.Sum.BitsPerSecond, Bytes: r.End.Sum.Bytes, JitterMs: r.End.Sum.JitterMs, LostPercent: r.End.Sum.LostPercent}
		}
		if hasCPU {
			t.CPUSeconds = cpu1 - cpu0
			t.RSSMiB = p.rssMiB()
		}
		return t, nil
	}
	return Throughput{}, fmt.Errorf("iperf3 on %s: %s", p.Name, lastErr)
}

// IperfFlows runs one iperf3 client per flow of p, all at once, each on the
// client side's CPU, and returns what their receivers saw in all (and the
// path's CPU time over the run).
func IperfFlows(ctx context.Context, p *Path, d time.Duration) (Throughput, error) {
	var lastErr string
	for attempt := 0; attempt < 30; attempt++ {
		cpu0, hasCPU := p.cpuSeconds()
		outs := make([][]byte, len(p.Flows))
		done := make(chan struct{}, len(p.Flows))
		for i, f := range p.Flows {
			go func() {
				outs[i], _ = p.onCPU(ctx, f.ClientNS, clientCPU, "iperf3", "-c", f.Server.String(), "-p", fmt.Sprint(f.Port),
					"-t", fmt.Sprint(int(d.Seconds())), "-J").Output()
				done <- struct{}{}
			}()
		}
		for range p.Flows {
			<-done
		}
		cpu1, _ := p.cpuSeconds()
		if ctx.Err() != nil {
			return Throughput{}, ctx.Err()
		}
		var t Throughput
		lastErr = ""
		for _, out := range outs {
			var r iperfJSON
			if err := json.Unmarshal(out, &r); err != nil {
				return Throughput{}, fmt.Errorf("iperf3 on %s: %v", p.Name, err)
			}
			if r.Error != "" {
				lastErr = r.Error
				break
			}
			t.BitsPerSecond += r.End.SumReceived.BitsPerSecond
			t.Bytes += r.End.SumReceived.Bytes
		}
		if lastErr != "" {
			time.Sleep(200 * time.Millisecond) // a server may not listen yet
			continue
		}
		if hasCPU {
			t.CPUSeconds = cpu1 - cpu0
			t.RSSMiB = p.rssMiB()
		}
		return t, nil
	}
	return Throughput{}, fmt.Errorf("iperf3 flows on %s: %s", p.Name, lastErr)
}

// iperfJSON is the part of iperf3 -J output the bench reads.
type iperfJSON struct {
	Error string `json:"error"`
	End   struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Bytes         float64 `json:"bytes"`
		} `json:"sum_received"`
		Sum struct { // UDP
			BitsPerSecond float64 `json:"bits_per_second"`
			Bytes         float64 `json:"bytes"`
			JitterMs      float64 `json:"jitter_ms"`
			LostPercent   float64 `json:"lost_percent"`
		} `json:"sum"`
	} `json:"end"`
}

var pingTime = regexp.MustCompile(`time=([0-9.]+) ms`)

// pingRTTs sends count pings 10 ms apart and returns each RTT in ms.
func pingRTTs(ctx context.Context, p *Path, count int) ([]float64, error) {
	out, err := p.clientCommand(ctx, "ping", "-n", "-i", "0.01", "-c", fmt.Sprint(count), "-W", "1", p.Server.String()).Output()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("ping on %s: %v", p.Name, err)
	}
	var rtts []float64
	for _, m := range pingTime.FindAllStringSubmatch(string(out), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		rtts = append(rtts, v)
	}
	if len(rtts) < count/2 {
		return nil, fmt.Errorf("ping on %s: only %d of %d replies", p.Name, len(rtts), count)
	}
	return rtts, nil
}

// requestResponse runs weft-bench's TCP request/response client for d and
// returns transactions per second.
func requestResponse(ctx context.Context, bins string, p *Path, d time.Duration) (float64, error) {
	var lastErr error
	for attempt := 0; attempt < 30; attempt++ {
		out, err := p.clientCommand(ctx, filepath.Join(bins, "weft-bench"), "rr-client",
			"--target", p.Server.String()+":5202", "--duration", d.String()).Output()
		if err == nil {
			return strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	return 0, fmt.Errorf("request/response on %s: %v", p.Name, lastErr)
}
