package netlab

import (
	"context"
	"net"
	"os/exec"
	"testing"
	"time"
)

func TestDialInsideNode(t *testing.T) {
	if testing.Short() {
		t.Skip("lab test: needs root; run without -short")
	}
	l, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n, err := l.AddNode("node1")
	if err != nil {
		t.Fatal(err)
	}
	// A listener that exists only inside the node: "nc" is not assumed, so
	// use a Go listener created the same way Dial creates its socket.
	srv := exec.Command("ip", "netns", "exec", n.NS, "python3", "-c",
		"import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('127.0.0.1',9599));s.listen();c,_=s.accept();c.sendall(b'inside');c.close()")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	var c net.Conn
	for i := 0; i < 50; i++ {
		if c, err = n.Dial(context.Background(), "tcp", "127.0.0.1:9599"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	k, _ := c.Read(buf)
	if string(buf[:k]) != "inside" {
		t.Fatalf("read %q from the node's listener", buf[:k])
	}
}
