package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// defaultComponent is one manifest `outrigger init` writes, under the file name Dapr's
// `dapr init` gives it.
type defaultComponent struct {
	file    string
	summary func(p initPaths) string
	render  func(p initPaths) []byte
}

// initPaths are the data files of the defaults, absolute.
type initPaths struct {
	stateDB, pubsubDB string
}

// defaultComponents are the embedded defaults: they need no server.
var defaultComponents = []defaultComponent{
	{
		file: "statestore.yaml",
		render: func(p initPaths) []byte {
			// JSON strings are YAML strings, so any path stays one scalar.
			db, _ := json.Marshal(p.stateDB)
			return []byte(`# The default state store of outrigger run: SQLite in one file that every local
# sidecar shares, usable as the actor state store. Written by outrigger init.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: ` + string(db) + `
  - name: actorStateStore
    value: "true"
`)
		},
		summary: func(p initPaths) string { return "state.sqlite, data in " + p.stateDB },
	},
	{
		file: "pubsub.yaml",
		render: func(p initPaths) []byte {
			db, _ := json.Marshal(p.pubsubDB)
			return []byte(`# The default pub/sub of outrigger run: a broker in one SQLite file that every
# local sidecar shares, so that apps on this machine reach each other's
# subscriptions with no server, and messages outlive a sidecar restart. Written by
# outrigger init.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: ` + string(db) + `
`)
		},
		summary: func(p initPaths) string { return "pubsub.sqlite, messages in " + p.pubsubDB },
	},
}

func newInitCommand() *cobra.Command {
	var (
		dir, stateDB, pubsubDB string
		force                  bool
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write the default local components to ~/.outrigger/components",
		Long: `init writes the default components that outrigger run loads when it is given no
--resources-path. They need no server:

  statestore.yaml   the state store "statestore": SQLite in one file (--state-db),
                    shared by every local sidecar, usable as the actor state store
  pubsub.yaml       the pub/sub "pubsub": a broker in one SQLite file (--pubsub-db)
                    that every local sidecar shares; messages survive restarts

init is idempotent: a file that already holds the default is left alone, and a file
you have edited is kept unless --force is given.`,
		Example: `  outrigger init
  outrigger init --dir ./components --state-db ./state.db --pubsub-db ./pubsub.db
  outrigger init --force   # restore the defaults over your edits`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if dir, err = defaultedPath(dir, "components"); err != nil {
				return err
			}
			if stateDB, err = defaultedPath(stateDB, "state.db"); err != nil {
				return err
			}
			if pubsubDB, err = defaultedPath(pubsubDB, "pubsub.db"); err != nil {
				return err
			}
			return runInit(cmd, dir, initPaths{stateDB: stateDB, pubsubDB: pubsubDB}, force)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write the components to (default ~/.outrigger/components)")
	cmd.Flags().StringVar(&stateDB, "state-db", "", "the SQLite file of the default state store (default ~/.outrigger/state.db)")
	cmd.Flags().StringVar(&pubsubDB, "pubsub-db", "", "the SQLite file of the default pub/sub (default ~/.outrigger/pubsub.db)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite component files that differ from the defaults")
	return cmd
}

// outriggerHome is ~/.outrigger, where init writes and run looks by default.
func outriggerHome() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the home directory: %w", err)
	}
	return filepath.Join(home, ".outrigger"), nil
}

// defaultedPath is p made absolute, or ~/.outrigger/<name> when p is empty. Absolute,
// because the sidecar resolves the state file from its own working directory.
func defaultedPath(p, name string) (string, error) {
	if p == "" {
		home, err := outriggerHome()
		if err != nil {
			return "", err
		}
		return filepath.Join(home, name), nil
	}
	return filepath.Abs(p)
}

func runInit(cmd *cobra.Command, dir string, paths initPaths, force bool) error {
	out := cmd.OutOrStdout()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create the components directory: %w", err)
	}
	// SQLite creates the file but not its directory.
	for _, db := range []string{paths.stateDB, paths.pubsubDB} {
		if err := os.MkdirAll(filepath.Dir(db), 0o755); err != nil {
			return fmt.Errorf("create the directory of %s: %w", db, err)
		}
	}
	for _, c := range defaultComponents {
		file := filepath.Join(dir, c.file)
		want := c.render(paths)
		have, err := os.ReadFile(file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.WriteFile(file, want, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			fmt.Fprintf(out, "Wrote %s (%s)\n", file, c.summary(paths))
		case err != nil:
			return fmt.Errorf("read %s: %w", file, err)
		case bytes.Equal(have, want):
			fmt.Fprintf(out, "Unchanged %s\n", file)
		case force:
			if err := os.WriteFile(file, want, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			fmt.Fprintf(out, "Overwrote %s (%s)\n", file, c.summary(paths))
		default:
			fmt.Fprintf(out, "Kept %s: it differs from the default (--force overwrites it)\n", file)
		}
	}
	fmt.Fprintf(out, "Outrigger is initialised: outrigger run uses %s when it is given no --resources-path.\n", dir)
	return nil
}
