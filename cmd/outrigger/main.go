// Command outrigger is the single binary of Outrigger: each subcommand is one role
// (the operator, the sidecar, the local developer tools).
package main

import (
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
