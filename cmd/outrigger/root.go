package main

import (
	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "outrigger",
		Short: "A distributed application runtime for Kubernetes, wire-compatible with Dapr",
		Long: `Outrigger gives every app HTTP and gRPC building blocks (service invocation, state,
pub/sub, bindings, secrets, configuration, locks and actors) through a sidecar, and
manages the dapr.io resources on Kubernetes with an operator and an injector webhook.`,
		SilenceUsage: true,
	}
	root.AddCommand(
		newVersionCommand(),
		newOperatorCommand(),
		newDevCommand(),
		newSidecarCommand(),
		newInitCommand(),
		newRunCommand(),
		newListCommand(),
		newStopCommand(),
		newInvokeCommand(),
		newPublishCommand(),
		newDocsCommand(),
	)
	return root
}
