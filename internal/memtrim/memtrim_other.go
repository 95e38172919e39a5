//go:build !linux

package memtrim

import "runtime/debug"

// Release returns the heap's free memory to the system; elsewhere than on Linux it
// leaves the executable's pages to the system.
func Release() (int64, error) {
	debug.FreeOSMemory()
	return 0, nil
}
