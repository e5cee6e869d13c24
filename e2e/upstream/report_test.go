package upstream

import (
	"regexp"
	"strings"
	"testing"
)

const exclusionsText = `
# comment
[Feature:SCTPConnectivity] | the kernel has no SCTP
should provide Internet connection for containers | needs the internet
`

// A Ginkgo JSON report in the shape e2e.test writes (trimmed to the fields
// read): one passed, one failed, one excluded, one that skipped itself, one
// out of focus, and a suite setup node.
const reportJSON = `[{
  "StartTime": "2026-12-02T05:00:00Z", "EndTime": "2026-12-02T05:10:30Z",
  "PreRunStats": {"TotalSpecs": 7144, "SpecsThatWillRun": 3},
  "SuiteConfig": {"FocusStrings": ["\\[sig-network\\] Netpol", "Granular"], "SkipStrings": ["\\[Feature:SCTPConnectivity\\]"]},
  "SpecReports": [
    {"LeafNodeType": "SynchronizedBeforeSuite", "State": "passed"},
    {"ContainerHierarchyTexts": ["[sig-network] Netpol", "NetworkPolicy between server and client"], "LeafNodeType": "It",
     "LeafNodeText": "should support a 'default-deny-ingress' policy [Feature:NetworkPolicy]", "State": "passed", "RunTime": 61000000000},
    {"ContainerHierarchyTexts": ["[sig-network] Netpol", "NetworkPolicy between server and client"], "LeafNodeType": "It",
     "LeafNodeText": "should enforce policy based on Ports [Feature:NetworkPolicy]", "State": "failed", "RunTime": 90000000000,
     "Failure": {"Message": "Pod b/a could reach x/b\nmore lines"}},
    {"ContainerHierarchyTexts": ["[sig-network] Netpol [Feature:SCTPConnectivity]", "using SCTP"], "LeafNodeType": "It",
     "LeafNodeText": "should enforce policy based on Ports", "State": "skipped"},
    {"ContainerHierarchyTexts": ["[sig-network] Networking", "Granular Checks: Services"], "LeafNodeType": "It",
     "LeafNodeText": "should function for multiple endpoint-Services with same selector", "State": "skipped",
     "Failure": {"Message": "Requires at least 3 nodes (not 2)"}},
    {"ContainerHierarchyTexts": ["[sig-storage] CSI"], "LeafNodeType": "It", "LeafNodeText": "mounts", "State": "skipped"}
  ]}]`

func TestLoadReport(t *testing.T) {
	ex, err := ParseExclusions([]byte(exclusionsText))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Load("v1.34.4", []byte(reportJSON), ex)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Specs) != 4 {
		t.Fatalf("specs in scope: %d, want 4 (the setup node and the storage spec are out): %+v", len(r.Specs), r.Specs)
	}
	if p, f, s := r.Counts(); p != 1 || f != 1 || s != 2 {
		t.Fatalf("counts %d passed %d failed %d skipped, want 1 1 2", p, f, s)
	}
	reasons := map[string]string{}
	for _, s := range r.Specs {
		reasons[s.Name] = s.Reason
	}
	for name, want := range map[string]string{
		"[sig-network] Netpol [Feature:SCTPConnectivity] using SCTP should enforce policy based on Ports":                                     "excluded: the kernel has no SCTP",
		"[sig-network] Networking Granular Checks: Services should function for multiple endpoint-Services with same selector":                "Requires at least 3 nodes (not 2)",
		"[sig-network] Netpol NetworkPolicy between server and client should enforce policy based on Ports [Feature:NetworkPolicy]":           "Pod b/a could reach x/b",
		"[sig-network] Netpol NetworkPolicy between server and client should support a 'default-deny-ingress' policy [Feature:NetworkPolicy]": "",
	} {
		if got, ok := reasons[name]; !ok || got != want {
			t.Errorf("%s: reason %q (present %v), want %q", name, got, ok, want)
		}
	}
	md := r.Markdown()
	for _, want := range []string{"**1 passed, 1 failed, 2 skipped** of 4 specs in scope (the suite has 7144); 10m30s",
		"| failed | 1m30s | [sig-network] Netpol NetworkPolicy between server and client should enforce policy based on Ports"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	x, err := r.JUnit()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(x), `tests="4" failures="1" skipped="2"`) || strings.Count(string(x), "<testcase ") != 4 {
		t.Errorf("junit:\n%s", x)
	}
}

func TestSkipRegexExcludesExactlyTheList(t *testing.T) {
	ex, err := ParseExclusions([]byte(exclusionsText))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(SkipRegex(ex))
	for name, skip := range map[string]bool{
		"[sig-network] Netpol [Feature:SCTPConnectivity] [LinuxOnly] NetworkPolicy between server and client using SCTP should enforce policy based on Ports": true,
		"[sig-network] Networking should provide Internet connection for containers [Feature:Networking-IPv4]":                                                true,
		"[sig-network] Netpol NetworkPolicy between server and client should enforce policy based on Ports [Feature:NetworkPolicy]":                           false,
		"[sig-network] Networking Granular Checks: Pods should function for intra-pod communication: http [NodeConformance] [Conformance]":                    false,
	} {
		if re.MatchString(name) != skip {
			t.Errorf("%s: skipped %v, want %v", name, !skip, skip)
		}
	}
}

func TestParseExclusionsRefusesALineWithoutReason(t *testing.T) {
	if _, err := ParseExclusions([]byte("some spec\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("err = %v, want a line-1 error", err)
	}
}
