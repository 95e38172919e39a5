//go:build linux

package memtrim

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	// Linked for its size: the image then holds far more than the test runs, as the
	// sidecar's does.
	_ "github.com/outrigger-dev/outrigger/internal/scheme"
)

// imageRSS sums the resident kB of this process's read-only executable mappings.
func imageRSS(t *testing.T) int64 {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	counting := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := parseMaps(strings.NewReader(line)); len(m) == 1 {
			counting = len(readOnlyImage(m, exe)) == 1
			continue
		}
		if rest, ok := strings.CutPrefix(line, "Rss:"); ok && counting {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			total += kb
		}
	}
	return total
}

// faultInImage reads the whole read-only image through /proc/self/mem, which maps
// every page of it into this process, as a start-up that touched it all would.
func faultInImage(t *testing.T) {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	buf := make([]byte, 1<<20)
	for _, m := range readOnlyImage(parseMaps(bytes.NewReader(maps)), exe) {
		for off := m.start; off < m.end; off += uintptr(len(buf)) {
			n := min(uintptr(len(buf)), m.end-off)
			if _, err := mem.ReadAt(buf[:n], int64(off)); err != nil {
				t.Fatalf("read the image at %x: %v", off, err)
			}
		}
	}
}

func TestReleaseDropsTheImagesPages(t *testing.T) {
	faultInImage(t)
	before := imageRSS(t)
	if before < 1024 {
		t.Fatalf("only %d kB of the test binary's image resident before: cannot measure", before)
	}
	advised, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := imageRSS(t)
	t.Logf("image resident: %d kB before, %d kB after; %d MB advised", before, after, advised>>20)
	if advised == 0 || after > before/2 {
		t.Fatalf("image resident %d kB before and %d kB after Release (advised %d bytes): want at most half left", before, after, advised)
	}
	// The program goes on running from the pages it faults back in.
	if got := strconv.Itoa(len(strings.Repeat("x", 42))); got != "42" {
		t.Fatalf("got %q", got)
	}
}
