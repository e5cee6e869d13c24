package netlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Proc is a daemon started inside a node, a child of this process.
type Proc struct {
	Name string
	Log  string // path of its combined output
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
	err  error
}

// Start runs a daemon inside the node. Its output goes to a log file in the
// node's directory; the lab stops it on Close.
func (n *Node) Start(name string, args ...string) (*Proc, error) {
	return n.Lab.start(n.Command(context.Background(), name, args...), name, n.Dir, n.Name)
}

// start runs cmd (program name, wrapped for its namespace) as a daemon of
// the lab, logging to a file in dir.
func (l *Lab) start(cmd *exec.Cmd, name, dir, where string) (*Proc, error) {
	logPath := filepath.Join(dir, fmt.Sprintf("%s.%d.log", filepath.Base(name), time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s on %s: %w", name, where, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// Pid is the daemon's pid (ip netns exec, unshare and sh exec in place).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, once Done is closed.
func (p *Proc) Err() error { <-p.done; return p.err }

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM, then SIGKILL after 5 s, and waits.
func (p *Proc) Stop() {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.Kill()
		}
	})
	<-p.done
}

// Output returns what the process has logged so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Signal sends sig to the process (SIGHUP makes weft-agent reconcile now).
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }
