package bench

import (
	"encoding/xml"
	"strings"
	"testing"
)

// TestPlotsAreSVGNamingEveryPath: both plots are well-formed SVG and their
// legends or axes name every path measured.
func TestPlotsAreSVGNamingEveryPath(t *testing.T) {
	r := &Results{Paths: []PathResult{
		{Name: "underlay", TCP1: Summary{Min: 9, Median: 10, Max: 11}, TCP4: Summary{Min: 18, Median: 20, Max: 21}, RTTs: []float64{0.05, 0.06, 0.07}},
		{Name: "weft", TCP1: Summary{Min: 2, Median: 2.5, Max: 3}, TCP4: Summary{Min: 4, Median: 5, Max: 6}, RTTs: []float64{0.2, 0.25, 0.3}},
	}}
	for name, draw := range map[string]func(*Results) ([]byte, error){"throughput": throughputSVG, "latency": latencySVG} {
		b, err := draw(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		dec := xml.NewDecoder(strings.NewReader(string(b)))
		for {
			if _, err := dec.Token(); err != nil {
				if err.Error() != "EOF" {
					t.Fatalf("%s plot is not well-formed XML: %v", name, err)
				}
				break
			}
		}
		for _, p := range r.Paths {
			if !strings.Contains(string(b), ">"+p.Name+"<") {
				t.Errorf("%s plot does not name path %s", name, p.Name)
			}
		}
	}
}
