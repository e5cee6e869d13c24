// Command weft-e2e-report serves make e2e-upstream: it prints the suite's skip
// expression from weft's exclusion list, and turns Ginkgo's JSON report of a
// run into the report committed under e2e/results/.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/e2e/upstream"
)

const usage = `usage:
  weft-e2e-report skip EXCLUSIONS
      print the --ginkgo.skip expression that excludes every spec of the list
  weft-e2e-report focus SPECLIST
      print the --ginkgo.focus expression that selects every spec of the list
  weft-e2e-report write --version V --exclusions EXCLUSIONS --out DIR GINKGO_JSON
      write DIR/upstream-V-<time>.md and .xml, print the totals line`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "weft-e2e-report: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "skip":
		if len(args) != 2 {
			return errors.New(usage)
		}
		ex, err := exclusions(args[1])
		if err != nil {
			return err
		}
		fmt.Println(upstream.SkipRegex(ex))
		return nil
	case "focus":
		if len(args) != 2 {
			return errors.New(usage)
		}
		b, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		specs := upstream.ParseSpecList(b)
		if len(specs) == 0 {
			return fmt.Errorf("%s: no spec in it", args[1])
		}
		fmt.Println(upstream.Alternation(specs))
		return nil
	case "write":
		return write(args[1:])
	}
	return errors.New(usage)
}

func exclusions(path string) ([]upstream.Exclusion, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ex, err := upstream.ParseExclusions(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ex, nil
}

func write(args []string) error {
	fs := flag.NewFlagSet("write", flag.ContinueOnError)
	version := fs.String("version", "", "the Kubernetes version of e2e.test")
	exPath := fs.String("exclusions", "", "weft's exclusion list")
	out := fs.String("out", "e2e/results", "directory for the report")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *version == "" || *exPath == "" {
		return errors.New(usage)
	}
	ex, err := exclusions(*exPath)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	r, err := upstream.Load(*version, b, ex)
	if err != nil {
		return err
	}
	junit, err := r.JUnit()
	if err != nil {
		return err
	}
	base := filepath.Join(*out, fmt.Sprintf("upstream-%s-%s", *version, r.Start.UTC().Format("20060102T150405Z")))
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(base+".md", []byte(r.Markdown()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(base+".xml", junit, 0o644); err != nil {
		return err
	}
	passed, failed, skipped := r.Counts()
	fmt.Printf("upstream e2e: %d passed, %d failed, %d skipped (report %s.md)\n", passed, failed, skipped, base)
	return nil
}
