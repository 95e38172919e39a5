package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/outrigger-dev/outrigger/internal/version"
)

func newVersionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get()
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			case "", "text":
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "Outrigger %s\nGit commit: %s\nGo: %s\nPlatform: %s\n",
					info.Version, info.GitCommit, info.GoVersion, info.Platform)
				return err
			default:
				return fmt.Errorf("unknown output format %q for -o: use text or json", output)
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
