package mesh

import "testing"

// FuzzParseKey: a key file's content is one base64 key of 32 bytes; what
// is accepted prints back as the key it is.
func FuzzParseKey(f *testing.F) {
	f.Add([]byte("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n"))
	f.Add([]byte("c2hvcnQ=\n"))
	f.Add(make([]byte, 200))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKey(b)
		if err != nil {
			return
		}
		if len(b) > maxKeyFileSize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		if again, err := ParseKey([]byte(k.String())); err != nil || again != k {
			t.Fatalf("%s does not parse back: %v", k, err)
		}
	})
}
