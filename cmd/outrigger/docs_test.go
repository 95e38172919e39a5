package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docs/reference/cli.md is what `make docs` writes from this command tree.
func TestCLIReferenceIsFresh(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "reference", "cli.md")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := cliReference(); !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run make docs", path)
	}
}

// The reference is the same on every machine: defaults read from the environment show
// as placeholders.
func TestCLIReferenceIgnoresTheMachine(t *testing.T) {
	t.Setenv("HOME", "/home/someone")
	t.Setenv("TMPDIR", "/var/tmp/x")
	t.Setenv("SIDECAR_IMAGE", "example.com/mine:1")
	t.Setenv("POD_NAMESPACE", "somewhere")
	ref := string(cliReference())
	for _, s := range []string{"/home/someone", "/var/tmp/x", "example.com/mine", "somewhere"} {
		if strings.Contains(ref, s) {
			t.Errorf("the reference shows this machine's %s", s)
		}
	}
	if os.Getenv("HOME") != "/home/someone" || os.Getenv("SIDECAR_IMAGE") != "example.com/mine:1" {
		t.Error("cliReference did not restore the environment")
	}
	for _, cmd := range []string{"## outrigger operator", "## outrigger sidecar", "## outrigger run", "`--leader-elect`"} {
		if !strings.Contains(ref, cmd) {
			t.Errorf("the reference lacks %s", cmd)
		}
	}
	if strings.Contains(ref, "## outrigger docs") {
		t.Error("the hidden docs command is in the reference")
	}
}
