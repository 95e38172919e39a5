package selfhosted

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRegistry(t *testing.T) {
	dir := t.TempDir()
	me := os.Getpid()
	if err := Write(dir, Entry{AppID: "nodeapp", HTTPPort: 3500, InternalGRPCPort: 50002, SidecarPID: me, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// A dead process's entry is stale: not listed, not resolvable.
	if err := Write(dir, Entry{AppID: "ghost", SidecarPID: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	list, err := List(dir)
	if err != nil || len(list) != 1 || list[0].AppID != "nodeapp" || list[0].InternalGRPCPort != 50002 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if _, err := Lookup(dir, "ghost"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale entry resolves: %v", err)
	}
	if e, err := Lookup(dir, "nodeapp"); err != nil || e.HTTPPort != 3500 {
		t.Errorf("lookup = %+v, %v", e, err)
	}
	// Only the sidecar that wrote an entry removes it.
	if err := Remove(dir, "nodeapp", me+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup(dir, "nodeapp"); err != nil {
		t.Error("another pid removed the entry")
	}
	if err := Remove(dir, "nodeapp", me); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup(dir, "nodeapp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed entry resolves: %v", err)
	}
	if err := Write(dir, Entry{AppID: "../x"}); err == nil {
		t.Error("a path in the app id is accepted")
	}
}

// An entry whose pid now belongs to a later process (a crash, a reboot) is stale.
func TestReusedPIDIsNotRunning(t *testing.T) {
	dir := t.TempDir()
	me := os.Getpid()
	if err := Write(dir, Entry{AppID: "app", SidecarPID: me}); err != nil {
		t.Fatal(err)
	}
	e, err := Lookup(dir, "app")
	if err != nil || e.SidecarStart == 0 {
		t.Fatalf("entry %+v, %v: want a recorded start time", e, err)
	}
	if !Running(me, e.SidecarStart) {
		t.Error("this process does not count as running")
	}
	if Running(me, e.SidecarStart+1) {
		t.Error("a process with another start time counts as the recorded one")
	}
	// Forge an entry for this pid with another start time, as a reused pid would look.
	e.SidecarStart++
	data, _ := json.Marshal(e)
	if err := os.WriteFile(filepath.Join(dir, "app.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup(dir, "app"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a reused pid resolves: %v", err)
	}
	if list, _ := List(dir); len(list) != 0 {
		t.Errorf("a reused pid is listed: %+v", list)
	}
}
