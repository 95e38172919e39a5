package memtrim

import (
	"strings"
	"testing"
)

func TestReadOnlyImage(t *testing.T) {
	maps := parseMaps(strings.NewReader(`00400000-02dfc000 r-xp 00000000 fe:00 10159851                           /opt/outrigger
02dfc000-05f99000 r--p 029fc000 fe:00 10159851                           /opt/outrigger
05f99000-060a1000 rw-p 05b99000 fe:00 10159851                           /opt/outrigger
17145c400000-17145dc00000 rw-p 00000000 00:00 0
7fb2b33d2000-7fb2b3528000 r-xp 00026000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6
7fb2b3600000-7fb2b3700000 r--s 00000000 fe:00 1                          /opt/outrigger
7fb2b3700000-7fb2b3800000 r--p 00000000 fe:00 2                          /opt/out rigger (deleted)
not a mapping line
zz-01 r--p 0 0 0 /opt/outrigger
`))
	if len(maps) != 7 {
		t.Fatalf("parsed %d mappings, want 7: %+v", len(maps), maps)
	}
	got := readOnlyImage(maps, "/opt/outrigger")
	if len(got) != 2 || got[0].perms != "r-xp" || got[1].perms != "r--p" || got[0].start != 0x400000 || got[1].end != 0x5f99000 {
		t.Fatalf("selected %+v, want the text and read-only data of /opt/outrigger only", got)
	}
	// A replaced executable is still the process's own image; a path with a space
	// is read whole.
	if got := readOnlyImage(maps, "/opt/out rigger"); len(got) != 1 || got[0].start != 0x7fb2b3700000 {
		t.Fatalf("deleted executable: selected %+v", got)
	}
}
