// Command docs writes the generated pages of docs/reference (annotations, CRDs, error
// codes). `make docs` runs it, and `go run ./cmd/outrigger docs` for the CLI page.
//
//	go run ./hack/docs [--check]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/outrigger-dev/outrigger/internal/docgen"
	"github.com/outrigger-dev/outrigger/internal/manifests"
)

func main() {
	check := flag.Bool("check", false, "write nothing; fail if a committed page differs")
	flag.Parse()
	if err := run(*check); err != nil {
		fmt.Fprintln(os.Stderr, "docs:", err)
		os.Exit(1)
	}
}

func run(check bool) error {
	root, err := manifests.RepoRoot()
	if err != nil {
		return err
	}
	pages, err := docgen.Generate(root)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(pages))
	for name := range pages {
		names = append(names, name)
	}
	sort.Strings(names)
	var stale []string
	for _, name := range names {
		path := filepath.Join(root, name)
		if check {
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, pages[name]) {
				stale = append(stale, name)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, pages[name], 0o644); err != nil {
			return err
		}
	}
	if len(stale) > 0 {
		return fmt.Errorf("stale pages, run make docs: %v", stale)
	}
	return nil
}
