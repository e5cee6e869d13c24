// Package conformance runs network-policy-api's conformance suite
// (sigs.k8s.io/network-policy-api/conformance, v0.3.0) as its own
// conformance_profile_test.go does, with two differences, both for this
// machine's kernel, which has no SCTP:
//
//   - -skip-tests, the tests weft opts out of (e2e/cnp/exclusions.txt: the
//     SCTP ones), which the suite's report then lists as skipped (Go's
//     -test.skip would leave them reported as passed);
//   - the suite's manifests are its own (base/, copied from the module by
//     make) but for the containers that serve SCTP, which cannot open a
//     socket here and would keep every base pod from becoming Ready
//     (strip-sctp.awk); the tests and every other container are unchanged.
//
// make e2e-cnp builds it with go test -c and runs it against kind.
package conformance

import (
	"embed"
	"flag"
	"os"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/yaml"

	api "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/network-policy-api/conformance/tests"
	"sigs.k8s.io/network-policy-api/conformance/utils/flags"
	"sigs.k8s.io/network-policy-api/conformance/utils/suite"
)

// manifests is the module's conformance/base without its SCTP servers.
//
//go:embed base
var manifests embed.FS

var skipTests = flag.String("skip-tests", "", "comma-separated short names of tests to skip (reported as skipped)")

func TestConformanceProfiles(t *testing.T) {
	cfg, err := config.GetConfig()
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	clientSet, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	if err := api.Install(c.Scheme()); err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(c.Scheme()); err != nil {
		t.Fatal(err)
	}
	impl, err := suite.ParseImplementation(*flags.ImplementationOrganization, *flags.ImplementationProject, *flags.ImplementationURL,
		*flags.ImplementationVersion, *flags.ImplementationContact, *flags.ImplementationAdditionalInformation)
	if err != nil {
		t.Fatalf("implementation: %v", err)
	}
	var skip []string
	if *skipTests != "" {
		skip = strings.Split(*skipTests, ",")
	}
	s, err := suite.NewConformanceProfileTestSuite(suite.ConformanceProfileOptions{
		Options: suite.Options{
			Client:                     c,
			ClientSet:                  clientSet,
			KubeConfig:                 *cfg,
			Debug:                      *flags.ShowDebug,
			CleanupBaseResources:       *flags.CleanupBaseResources,
			SupportedFeatures:          suite.ParseSupportedFeatures(*flags.SupportedFeatures),
			ExemptFeatures:             suite.ParseSupportedFeatures(*flags.ExemptFeatures),
			EnableAllSupportedFeatures: *flags.EnableAllSupportedFeatures,
			SkipTests:                  skip,
			FS:                         &manifests,
		},
		Implementation:      *impl,
		ConformanceProfiles: suite.ParseConformanceProfiles(*flags.ConformanceProfiles),
	})
	if err != nil {
		t.Fatalf("suite: %v", err)
	}
	s.Setup(t)
	if err := s.Run(t, tests.ConformanceTests); err != nil {
		t.Fatal(err)
	}
	report, err := s.Report()
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	raw, err := yaml.Marshal(report)
	if err != nil {
		t.Fatal(err)
	}
	if *flags.ReportOutput != "" {
		if err := os.WriteFile(*flags.ReportOutput, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("conformance report:\n%s", raw)
}
