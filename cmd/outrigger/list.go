package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/selfhosted"
)

// listItem is one row of `outrigger list -o json`: the registry entry and its age.
type listItem struct {
	selfhosted.Entry
	Age string `json:"age"`
}

func newListCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the apps running with a sidecar on this machine",
		Long: `list shows each sidecar running on this machine, as recorded in the self-hosted
registry (~/.outrigger/registry, or $OUTRIGGER_REGISTRY_DIR): the app id, the sidecar's
HTTP and gRPC ports, the app's port, the pids of the sidecar, of the outrigger run that
started it and of the app, its age and the app's command. Entries whose sidecar has
exited are not shown.`,
		Example: `  outrigger list
  outrigger list -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("unknown output format %q for -o: use table or json", output)
			}
			dir, err := selfhosted.Dir()
			if err != nil {
				return err
			}
			entries, err := selfhosted.List(dir)
			if err != nil {
				return fmt.Errorf("read the registry %s: %w", dir, err)
			}
			now := time.Now()
			items := make([]listItem, 0, len(entries))
			for _, e := range entries {
				items = append(items, listItem{Entry: e, Age: age(now.Sub(e.Started))})
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(items)
			}
			return writeListTable(cmd.OutOrStdout(), items)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func writeListTable(w io.Writer, items []listItem) error {
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, "No apps are running.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "APP ID\tHTTP PORT\tGRPC PORT\tAPP PORT\tAGE\tCREATED\tSIDECAR PID\tRUN PID\tAPP PID\tCOMMAND")
	for _, it := range items {
		cmd := it.Command
		if cmd == "" {
			cmd = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n",
			it.AppID, it.HTTPPort, it.GRPCPort, orDash(it.AppPort), it.Age,
			it.Started.Local().Format(time.DateTime), it.SidecarPID, orDash(it.RunPID), orDash(it.AppPID), cmd)
	}
	return tw.Flush()
}

func orDash(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// age is a duration the way kubectl shows one: its largest unit, or two for short ones.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 10*time.Minute:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}
