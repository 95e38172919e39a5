package selfhosted

import (
	"errors"
	"os"
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
