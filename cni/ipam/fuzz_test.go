package ipam

import (
	"strings"
	"testing"
)

// FuzzParseReservation: a reservation file names at most one attachment,
// with an ID and interface name that cannot smuggle a line or a path.
func FuzzParseReservation(f *testing.F) {
	f.Add([]byte("node1-web-1\neth0\n"))
	f.Add([]byte("\n"))
	f.Add([]byte("id\nif/../x\nmore"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a := ParseReservation(b)
		if len(a.ContainerID) > 256 || len(a.IfName) > 15 || strings.ContainsAny(a.ContainerID+a.IfName, "\n\r\x00") || strings.Contains(a.IfName, "/") {
			t.Fatalf("%q parsed as %+v", b, a)
		}
	})
}
