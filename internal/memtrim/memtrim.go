// Package memtrim gives back the pages of the executable that only start-up used.
//
// A Go binary's text and read-only data are mapped from the file. Every page that
// package initialisation, flag parsing and component loading touched stays in the
// process's resident set after start-up, although most of it (scheme registration,
// protobuf descriptors, YAML decoding, the operator's code linked into the same
// binary) is never run again. Dropping those mappings once the process is up leaves
// the resident set at what the steady state really touches: a page that is used again
// is mapped back from the page cache on its next access, with a minor fault.
package memtrim

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// mapping is one line of /proc/self/maps.
type mapping struct {
	start, end uintptr
	perms      string
	path       string
}

// parseMaps reads the mappings of /proc/<pid>/maps. Lines it cannot read are skipped.
func parseMaps(r io.Reader) []mapping {
	var out []mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// address perms offset dev inode [path]
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		m := mapping{start: uintptr(start), end: uintptr(end), perms: f[1]}
		if len(f) > 5 {
			m.path = strings.Join(f[5:], " ")
		}
		out = append(out, m)
	}
	return out
}

// readOnlyImage selects the mappings of the executable at exe that can never hold
// private data: private, not writable. Writable mappings (.data, .bss) are left
// alone, since dropping them would lose what the program wrote there.
func readOnlyImage(maps []mapping, exe string) []mapping {
	var out []mapping
	for _, m := range maps {
		path := strings.TrimSuffix(m.path, " (deleted)")
		if path != exe || len(m.perms) < 4 || m.perms[0] != 'r' || m.perms[1] != '-' || m.perms[3] != 'p' {
			continue
		}
		out = append(out, m)
	}
	return out
}
