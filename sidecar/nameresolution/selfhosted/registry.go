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
	"strconv"
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
	SidecarPID int `json:"sidecarPid"`
	RunPID     int `json:"runPid,omitempty"`
	AppPID     int `json:"appPid,omitempty"`
	// The processes' start times (clock ticks since boot) tell them from later
	// processes that reuse their pids after a crash or a reboot. Write fills them.
	SidecarStart uint64    `json:"sidecarStart,omitempty"`
	RunStart     uint64    `json:"runStart,omitempty"`
	AppStart     uint64    `json:"appStart,omitempty"`
	Command      string    `json:"command,omitempty"`
	Started      time.Time `json:"started"`
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
	// Entries are written while their processes run, so this reads the right ones.
	e.SidecarStart, e.RunStart, e.AppStart = startOf(e.SidecarPID), startOf(e.RunPID), startOf(e.AppPID)
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
	if !Running(e.SidecarPID, e.SidecarStart) {
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
		if err != nil || !Running(e.SidecarPID, e.SidecarStart) {
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

// Running reports whether pid is still the process that started at start; with no
// start time recorded, or no /proc to read it from, any live process counts.
func Running(pid int, start uint64) bool {
	if !Alive(pid) {
		return false
	}
	if start == 0 {
		return true
	}
	now, err := ProcStart(pid)
	return err != nil || now == start
}

// ProcStart reads a process's start time, in clock ticks since boot, from /proc.
func ProcStart(pid int) (uint64, error) {
	fields, err := ProcStat(pid)
	if err != nil {
		return 0, err
	}
	// Fields after the command name start at field 3 (state); starttime is field 22.
	const starttime = 22 - 3
	if len(fields) <= starttime {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	return strconv.ParseUint(fields[starttime], 10, 64)
}

// ProcStat returns the fields of /proc/<pid>/stat after the command name, which is in
// parentheses and may hold any byte, spaces included.
func ProcStat(pid int) ([]string, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	return strings.Fields(string(stat[i+1:])), nil
}

func startOf(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	start, _ := ProcStart(pid)
	return start
}
