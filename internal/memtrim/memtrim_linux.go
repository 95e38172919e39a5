//go:build linux

package memtrim

import (
	"fmt"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// Release returns the heap's free memory to the system and drops the resident pages
// of the executable's read-only mappings (text and read-only data). It returns how
// many bytes of mappings it advised. It is safe at any time: those mappings hold only
// the file's contents, so a dropped page reads back unchanged on its next use.
func Release() (int64, error) {
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("find the executable: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("read the mappings: %w", err)
	}
	maps := parseMaps(f)
	_ = f.Close()
	var advised int64
	for _, m := range readOnlyImage(maps, exe) {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return advised, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, errno)
		}
		advised += int64(m.end - m.start)
	}
	return advised, nil
}
