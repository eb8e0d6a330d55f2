package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vmrunner/vmrunner/supervisor"
)

// qemuUser is the user the running QEMU was handed to (nil: vmrunner's
// own), kept so a medium inserted live can be opened to it.
var qemuUser atomic.Pointer[supervisor.QEMUUser]

// openMedium lets QEMU's user read a medium fetched into the cache while
// QEMU runs (vmrunner's umask keeps the cache private): the cache folder
// becomes searchable but not listable (0711), the medium readable by
// QEMU's group (0640), as Grant does for the state folder's files.
func openMedium(cacheDir, path string) error {
	u := qemuUser.Load()
	if u == nil {
		return nil
	}
	if filepath.Dir(path) != filepath.Clean(cacheDir) {
		return fmt.Errorf("medium %s is outside the image cache %s", path, cacheDir)
	}
	var st unix.Stat_t
	if err := unix.Stat(cacheDir, &st); err != nil {
		return fmt.Errorf("opening the image cache to %s: %w", u, err)
	}
	if err := unix.Chmod(cacheDir, st.Mode&0o7777|0o711); err != nil {
		return fmt.Errorf("opening the image cache to %s: %w", u, err)
	}
	if err := os.Lchown(path, -1, int(u.GID)); err != nil {
		return fmt.Errorf("opening %s to %s: %w", path, u, err)
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, path, 0o640, 0); err != nil {
		return fmt.Errorf("opening %s to %s: %w", path, u, err)
	}
	return nil
}
