// Package upstream turns a run of the upstream Kubernetes e2e suite
// (e2e.test, Ginkgo's JSON report) into weft's report: per spec in scope,
// passed, failed or skipped with the reason, and the totals. It also owns the
// list of specs weft excludes by default, each with its reason, and turns that
// list into the suite's skip expression, so that the two can never disagree.
package upstream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Exclusion is one spec (or a narrow family of specs) weft does not run by
// default: Text is a literal part of the spec's full name, Reason why.
type Exclusion struct {
	Text   string
	Reason string
}

// ParseExclusions reads the exclusion list: one "text | reason" per line;
// blank lines and lines starting with # are ignored.
func ParseExclusions(b []byte) ([]Exclusion, error) {
	var out []Exclusion
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		text, reason, ok := strings.Cut(line, " | ")
		text, reason = strings.TrimSpace(text), strings.TrimSpace(reason)
		if !ok || text == "" || reason == "" {
			return nil, fmt.Errorf("exclusions line %d: want \"spec text | reason\", got %q", n, line)
		}
		out = append(out, Exclusion{Text: text, Reason: reason})
	}
	return out, sc.Err()
}

// SkipRegex is the --ginkgo.skip expression that excludes exactly the list.
func SkipRegex(ex []Exclusion) string {
	texts := make([]string, len(ex))
	for i, e := range ex {
		texts[i] = e.Text
	}
	return Alternation(texts)
}

// ParseSpecList reads a list of spec names (or literal parts of them), one per
// line; blank lines and lines starting with # are ignored.
func ParseSpecList(b []byte) []string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// Alternation is the regular expression that matches a name containing any
// of the literal texts.
func Alternation(texts []string) string {
	parts := make([]string, len(texts))
	for i, t := range texts {
		parts[i] = regexp.QuoteMeta(t)
	}
	return strings.Join(parts, "|")
}

// Spec is one spec in scope of a run (its name matched the focus).
type Spec struct {
	Name     string
	State    string // passed, failed, skipped, or Ginkgo's other end states
	Reason   string // why it was skipped, or the first line of its failure
	Duration time.Duration
}

// Result is a run, as the report shows it.
type Result struct {
	Version    string
	Focus      []string
	Skip       []string
	Start, End time.Time
	SuiteSpecs int // every spec the suite has
	Specs      []Spec
}

// Counts returns how many specs in scope passed, failed and were skipped.
func (r *Result) Counts() (passed, failed, skipped int) {
	for _, s := range r.Specs {
		switch s.State {
		case "passed":
			passed++
		case "skipped", "pending":
			skipped++
		default:
			failed++
		}
	}
	return
}

// ginkgoReport is the part of Ginkgo v2's JSON report (types.Report) read here.
type ginkgoReport struct {
	StartTime   time.Time
	EndTime     time.Time
	PreRunStats struct{ TotalSpecs int }
	SuiteConfig struct {
		FocusStrings []string
		SkipStrings  []string
	}
	SpecReports []struct {
		ContainerHierarchyTexts []string
		LeafNodeType            string
		LeafNodeText            string
		State                   string
		RunTime                 time.Duration
		Failure                 struct {
			Message string
		}
	}
}

// Load reads Ginkgo's JSON report of one e2e.test run. Specs whose name
// matches none of the run's focus expressions are out of scope and left out;
// a spec in scope that did not run gets its reason from the exclusion list, or
// from the suite's own skip message (a spec that skips itself says why).
func Load(version string, report []byte, ex []Exclusion) (*Result, error) {
	var reports []ginkgoReport
	if err := json.Unmarshal(report, &reports); err != nil {
		return nil, fmt.Errorf("ginkgo JSON report: %w", err)
	}
	if len(reports) == 0 {
		return nil, fmt.Errorf("ginkgo JSON report: no suite in it")
	}
	g := reports[0]
	r := &Result{Version: version, Focus: g.SuiteConfig.FocusStrings, Skip: g.SuiteConfig.SkipStrings,
		Start: g.StartTime, End: g.EndTime, SuiteSpecs: g.PreRunStats.TotalSpecs}
	var focus []*regexp.Regexp
	for _, f := range r.Focus {
		re, err := regexp.Compile(f)
		if err != nil {
			return nil, fmt.Errorf("focus %q: %w", f, err)
		}
		focus = append(focus, re)
	}
	for _, s := range g.SpecReports {
		if s.LeafNodeType != "It" {
			continue // suite setup nodes; their failures fail the specs too
		}
		name := strings.TrimSpace(strings.Join(append(slices.Clone(s.ContainerHierarchyTexts), s.LeafNodeText), " "))
		if len(focus) > 0 && !slices.ContainsFunc(focus, func(re *regexp.Regexp) bool { return re.MatchString(name) }) {
			continue
		}
		spec := Spec{Name: name, State: s.State, Duration: s.RunTime}
		switch {
		case s.State == "skipped" && s.Failure.Message == "":
			spec.Reason = skipReason(name, ex)
		case s.State != "passed":
			spec.Reason = firstLine(s.Failure.Message)
		}
		r.Specs = append(r.Specs, spec)
	}
	slices.SortFunc(r.Specs, func(a, b Spec) int { return strings.Compare(a.Name, b.Name) })
	return r, nil
}

func skipReason(name string, ex []Exclusion) string {
	for _, e := range ex {
		if strings.Contains(name, e.Text) {
			return "excluded: " + e.Reason
		}
	}
	return "skipped by the run's extra skip expression (E2E_SKIP)"
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Markdown renders the report committed under e2e/results/.
func (r *Result) Markdown() string {
	var b strings.Builder
	passed, failed, skipped := r.Counts()
	fmt.Fprintf(&b, "# Upstream Kubernetes e2e on weft: %s, %s\n\n", r.Version, r.Start.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "**%d passed, %d failed, %d skipped** of %d specs in scope (the suite has %d); %s.\n\n",
		passed, failed, skipped, len(r.Specs), r.SuiteSpecs, r.End.Sub(r.Start).Round(time.Second))
	fmt.Fprintf(&b, "Focus: `%s`\n\n", strings.Join(r.Focus, "` or `"))
	if len(r.Skip) > 0 {
		fmt.Fprintf(&b, "Skip: the exclusion list `e2e/upstream/exclusions.txt`%s.\n\n", extraSkip(r.Skip))
	}
	b.WriteString("| result | time | spec | reason |\n|---|---|---|---|\n")
	for _, s := range r.Specs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", s.State, s.Duration.Round(time.Second), cell(s.Name), cell(s.Reason))
	}
	return b.String()
}

func extraSkip(skip []string) string {
	if len(skip) <= 1 {
		return ""
	}
	return " and `" + strings.Join(skip[1:], "` `") + "`"
}

func cell(s string) string { return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s) }

// JUnit renders the specs in scope as a JUnit XML document.
func (r *Result) JUnit() ([]byte, error) {
	type msg struct {
		Message string `xml:"message,attr"`
	}
	type testcase struct {
		Name    string  `xml:"name,attr"`
		Class   string  `xml:"classname,attr"`
		Time    float64 `xml:"time,attr"`
		Skipped *msg    `xml:"skipped"`
		Failure *msg    `xml:"failure"`
	}
	type suite struct {
		XMLName  xml.Name   `xml:"testsuite"`
		Name     string     `xml:"name,attr"`
		Tests    int        `xml:"tests,attr"`
		Failures int        `xml:"failures,attr"`
		Skipped  int        `xml:"skipped,attr"`
		Time     float64    `xml:"time,attr"`
		Cases    []testcase `xml:"testcase"`
	}
	_, failed, skipped := r.Counts()
	s := suite{Name: "Kubernetes e2e suite " + r.Version + " on weft", Tests: len(r.Specs), Failures: failed, Skipped: skipped,
		Time: r.End.Sub(r.Start).Seconds()}
	for _, sp := range r.Specs {
		tc := testcase{Name: sp.Name, Class: "Kubernetes e2e suite", Time: sp.Duration.Seconds()}
		switch sp.State {
		case "passed":
		case "skipped", "pending":
			tc.Skipped = &msg{sp.Reason}
		default:
			tc.Failure = &msg{sp.State + ": " + sp.Reason}
		}
		s.Cases = append(s.Cases, tc)
	}
	out, err := xml.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}
