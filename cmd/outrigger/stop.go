package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/outrigger-dev/outrigger/sidecar/nameresolution/selfhosted"
)

func newStopCommand() *cobra.Command {
	var (
		appIDs  []string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "stop --app-id ID [--app-id ID...]",
		Short: "Stop an app that outrigger run started, with its sidecar",
		Long: `stop finds the app in the self-hosted registry and sends SIGTERM to the outrigger run
that started it, which stops the app and then its sidecar as on Ctrl-C. A sidecar with
no outrigger run behind it gets the SIGTERM itself, and so does the app's process group
when it is known. stop then waits, up to --timeout, until all of them have exited.`,
		Example: `  outrigger stop --app-id nodeapp
  outrigger stop -a nodeapp -a pythonapp`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(appIDs) == 0 {
				return errors.New("--app-id is required: name the app to stop (outrigger list shows the running ones)")
			}
			dir, err := selfhosted.Dir()
			if err != nil {
				return err
			}
			var errs []error
			for _, id := range appIDs {
				if err := stopApp(dir, id, timeout); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "app stopped successfully: %s\n", id)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringArrayVarP(&appIDs, "app-id", "a", nil, "the id of the app to stop; repeatable")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the app and its sidecar to exit")
	return cmd
}

func stopApp(dir, appID string, timeout time.Duration) error {
	e, err := selfhosted.Lookup(dir, appID)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no app with id %q is running (outrigger list shows the running ones)", appID)
	}
	if err != nil {
		return err
	}
	switch {
	case e.RunPID > 0 && selfhosted.Running(e.RunPID, e.RunStart) && startedBy(e.SidecarPID, e.RunPID):
		// outrigger run stops the app and the sidecar in order, and cleans up.
		if err := syscall.Kill(e.RunPID, syscall.SIGTERM); err != nil {
			return fmt.Errorf("stop %s: signal outrigger run (pid %d): %w", appID, e.RunPID, err)
		}
	default:
		if e.AppPID > 0 && selfhosted.Running(e.AppPID, e.AppStart) {
			// outrigger run starts the app as the leader of its own process group.
			if err := syscall.Kill(-e.AppPID, syscall.SIGTERM); err != nil {
				_ = syscall.Kill(e.AppPID, syscall.SIGTERM)
			}
		}
		if err := syscall.Kill(e.SidecarPID, syscall.SIGTERM); err != nil {
			return fmt.Errorf("stop %s: signal the sidecar (pid %d): %w", appID, e.SidecarPID, err)
		}
	}
	type proc struct {
		pid   int
		start uint64
	}
	procs := map[string]proc{"outrigger run": {e.RunPID, e.RunStart}, "sidecar": {e.SidecarPID, e.SidecarStart}, "app": {e.AppPID, e.AppStart}}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var left []string
		for name, p := range procs {
			if p.pid > 0 && running(p.pid, p.start) {
				left = append(left, name+" (pid "+strconv.Itoa(p.pid)+")")
			}
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("%s did not stop within %s: still running: %s", appID, timeout, strings.Join(left, ", "))
		}
	}
}

// startedBy reports whether runPID is still the sidecar's parent, so that a pid the
// system has given to another process since is never signalled. Without /proc it trusts
// the registry.
func startedBy(sidecarPID, runPID int) bool {
	fields, err := selfhosted.ProcStat(sidecarPID)
	if err != nil {
		return true
	}
	// Fields after the command: state, ppid, ...
	if len(fields) < 2 {
		return true
	}
	return fields[1] == strconv.Itoa(runPID)
}

// running reports whether the process exists and has not exited: a zombie, which
// has exited but whose parent has not collected it yet, counts as stopped.
func running(pid int, start uint64) bool {
	if !selfhosted.Running(pid, start) {
		return false
	}
	fields, err := selfhosted.ProcStat(pid)
	if err != nil {
		return true
	}
	return len(fields) == 0 || fields[0] != "Z"
}
