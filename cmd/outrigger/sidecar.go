package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/outrigger-dev/outrigger/sidecar/runtime"
)

func newSidecarCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sidecar",
		Short: "Run the sidecar (daprd): the Dapr HTTP and gRPC APIs for one app",
		Long: `sidecar serves the Dapr v1.0 HTTP and gRPC APIs for one app, with the components
found in --resources-path. It takes daprd's flags, so manifests and tools written for
daprd start it unchanged. It stops gracefully on SIGTERM or POST /v1.0/shutdown.`,
		Args: cobra.NoArgs,
	}
	flags := runtime.Flags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := flags.Finish(os.Getenv)
		if err != nil {
			return err
		}
		log := sidecarLogger(cfg)
		if err := runtime.New(cfg, log).Run(ctrl.SetupSignalHandler()); err != nil {
			log.Error(err, "Sidecar failed")
			return fmt.Errorf("sidecar %q: %w", cfg.AppID, err)
		}
		return nil
	}
	return cmd
}

func sidecarLogger(cfg runtime.Config) logr.Logger {
	level := map[string]zapcore.Level{
		"debug": zapcore.DebugLevel, "info": zapcore.InfoLevel, "warn": zapcore.WarnLevel,
		"error": zapcore.ErrorLevel, "fatal": zapcore.FatalLevel,
	}[strings.ToLower(cfg.LogLevel)]
	// Stack traces are for panics: an error a user can fix reads better without one.
	opts := []zap.Opts{zap.Level(level), zap.WriteTo(os.Stderr), zap.StacktraceLevel(zapcore.PanicLevel)}
	if !cfg.LogAsJSON {
		opts = append(opts, zap.ConsoleEncoder())
	} else {
		opts = append(opts, zap.JSONEncoder())
	}
	return zap.New(opts...).WithValues("app_id", cfg.AppID)
}
