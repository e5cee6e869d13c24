package dashboards

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "write the dashboards' JSON into the chart (make dashboards)")

// root is the repository's root, from this package's directory.
const root = "../.."

// TestDashboardsAreCommitted: the chart's JSON is what this package builds
// now (run make dashboards after a change), and nothing else is there.
func TestDashboardsAreCommitted(t *testing.T) {
	dir := filepath.Join(root, Dir)
	all := All()
	for name, b := range all {
		want, err := Render(b)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run make dashboards)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the dashboards package builds: run make dashboards", path)
		}
	}
	// The README's picture of the mesh dashboard's panels.
	want, err := Render(Mesh())
	if err != nil {
		t.Fatal(err)
	}
	svg, err := LayoutSVG(want)
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(root, LayoutFile)
	if *update {
		if err := os.WriteFile(layout, svg, 0o644); err != nil {
			t.Fatal(err)
		}
	} else if got, err := os.ReadFile(layout); err != nil || !bytes.Equal(got, svg) {
		t.Errorf("%s is not the mesh dashboard's layout (%v): run make dashboards", layout, err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range files {
		if _, ok := all[filepath.Base(f)]; !ok {
			t.Errorf("%s is not built by the dashboards package: remove it", f)
		}
	}
}

var seriesName = regexp.MustCompile(`\bweft_[a-z0-9_]+`)

// TestQueriedSeriesExist: every weft series a dashboard or an alert
// queries is one the agent's code registers (a renamed metric would leave
// an empty panel or an alert that never fires).
func TestQueriedSeriesExist(t *testing.T) {
	exported := map[string]bool{}
	registered := regexp.MustCompile(`"(weft_[a-z0-9_]+)"`)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "e2e" || d.Name() == "tools") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.Contains(path, "deploy/dashboards") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range registered.FindAllSubmatch(b, -1) {
			exported[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(exported) < 20 {
		t.Fatalf("found only %d weft series in the code: the scan is broken", len(exported))
	}
	sources := map[string][]byte{}
	for name, b := range All() {
		j, err := Render(b)
		if err != nil {
			t.Fatal(err)
		}
		sources["dashboard "+name] = j
	}
	alerts, err := os.ReadFile(filepath.Join(root, "deploy/helm/weft/files/alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sources["alerts.yaml"] = alerts
	for what, b := range sources {
		var used []string
		for _, m := range seriesName.FindAll(b, -1) {
			used = append(used, string(m))
		}
		slices.Sort(used)
		for _, name := range slices.Compact(used) {
			// A counter's name may drop its _total; a histogram's series add
			// _bucket, _sum and _count to its name.
			base := strings.TrimSuffix(name, "_total")
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suffix); ok && exported[b] {
					base = b
				}
			}
			if !exported[name] && !exported[base] {
				t.Errorf("%s queries %s, which no agent code registers", what, name)
			}
		}
		if len(used) == 0 {
			t.Errorf("%s queries no weft series", what)
		}
	}
}
