// Package selfhosted is the local registry of running sidecars: a directory where each
// sidecar records its app id, ports and process id while it runs. Sidecars resolve each
// other through it, and `outrigger list` and `stop` read it.
package selfhosted

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Entry is one running sidecar (and the app `outrigger run` started with it).
type Entry struct {
	AppID            string `json:"appId"`
	HTTPPort         int    `json:"httpPort"`
	GRPCPort         int    `json:"grpcPort"`
	InternalGRPCPort int    `json:"internalGrpcPort"`
	AppPort          int    `json:"appPort,omitempty"`
	// SidecarPID is the sidecar process; RunPID the `outrigger run` process, when one
	// started the sidecar (0 otherwise); AppPID the app's process, when known.
	SidecarPID int       `json:"sidecarPid"`
	RunPID     int       `json:"runPid,omitempty"`
	AppPID     int       `json:"appPid,omitempty"`
	Command    string    `json:"command,omitempty"`
	Started    time.Time `json:"started"`
}

// Dir is the registry directory: $OUTRIGGER_REGISTRY_DIR, else ~/.outrigger/registry.
func Dir() (string, error) {
	if d := os.Getenv("OUTRIGGER_REGISTRY_DIR"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the registry directory: %w", err)
	}
	return filepath.Join(home, ".outrigger", "registry"), nil
}

func path(dir, appID string) string { return filepath.Join(dir, appID+".json") }

// Write records e, replacing any earlier entry of the same app id atomically.
func Write(dir string, e Entry) error {
	if e.AppID == "" || strings.ContainsAny(e.AppID, `/\`) {
		return fmt.Errorf("registry: invalid app id %q", e.AppID)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	data, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+e.AppID+".*.tmp")
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("registry: %w", err)
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("registry: %w", err)
	}
	return os.Rename(tmp.Name(), path(dir, e.AppID))
}

// Remove deletes the entry of appID if it still belongs to sidecarPID, so a sidecar
// that stops late never removes its successor's entry.
func Remove(dir, appID string, sidecarPID int) error {
	e, err := read(path(dir, appID))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil && e.SidecarPID != sidecarPID {
		return nil
	}
	if err := os.Remove(path(dir, appID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

// Lookup returns the live entry of appID; a stale one (its sidecar is gone) is
// reported as os.ErrNotExist.
func Lookup(dir, appID string) (Entry, error) {
	e, err := read(path(dir, appID))
	if err != nil {
		return Entry{}, err
	}
	if !Alive(e.SidecarPID) {
		return Entry{}, fmt.Errorf("registry: %s's sidecar (pid %d) is gone: %w", appID, e.SidecarPID, os.ErrNotExist)
	}
	return e, nil
}

// List returns the live entries, sorted by app id; stale ones are skipped.
func List(dir string) ([]Entry, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, f := range files {
		e, err := read(f)
		if err != nil || !Alive(e.SidecarPID) {
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AppID < out[j].AppID })
	return out, nil
}

func read(file string) (Entry, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Entry{}, err
	}
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return Entry{}, fmt.Errorf("registry: %s: %w", file, err)
	}
	return e, nil
}

// Alive reports whether a process with the pid exists.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
