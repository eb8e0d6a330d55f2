package vm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrRunning is Cleanup's refusal: a vmrunner holds the VM's lock.
var ErrRunning = errors.New("the VM is running")

// Cleanup removes the state folder of a VM that is not running (the
// seed project's --cleanup): disks, UEFI variables, MACs, the seed. It
// takes the folder's lock as a start would, so no vmrunner can start the
// VM meanwhile, and refuses with ErrRunning while one holds it. It reports
// whether there was a folder to remove.
func Cleanup(paths Paths) (bool, error) {
	st, err := os.Lstat(paths.State)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !st.IsDir():
		return false, fmt.Errorf("%s is not a folder (a symlink?): remove it by hand", paths.State)
	}
	f, err := openPrivate(paths.Lock, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, fmt.Errorf("%s: %w; stop it first (docker stop, or SIGTERM to vmrunner)", paths.State, ErrRunning)
		}
		return false, fmt.Errorf("locking %s: %w", paths.Lock, err)
	}
	entries, err := os.ReadDir(paths.State)
	if err != nil {
		return false, err
	}
	// The lock goes last, so a start racing with us waits on it until the
	// rest is gone.
	for _, e := range entries {
		if e.Name() == filepath.Base(paths.Lock) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(paths.State, e.Name())); err != nil {
			return false, err
		}
	}
	if err := os.Remove(paths.Lock); err != nil {
		return false, err
	}
	return true, os.Remove(paths.State)
}
