package vm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// The state folder is private to the user vmrunner runs as: a symlink or a
// file of another user in it could make a root vmrunner write where that
// user chose (serial.log -> /etc/cron.d/x) or read what it should not. So
// the folder and every file vmrunner opens in it are checked, and opened
// without following a symlink.

// Files of the state folder that only start-up uses.
const (
	guestPasswordFile = "guest-password" // the generated password
	ephemeralMarker   = "ephemeral"      // PERSIST=0: remove this folder at the end
)

// ErrNotPrivate says a state path is a symlink, not of the kind expected,
// or owned by another user.
var ErrNotPrivate = errors.New("not a private file of this user")

// mkdirSearchable makes dir and its missing parents searchable but not
// listable by others (0711, whatever the umask): a confined QEMU, run as
// its own user, must pass through a DATA_DIR that vmrunner made.
func mkdirSearchable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirSearchable(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(dir, 0o711)
}

// privateDir makes dir (mode 0700, with its missing parents) or checks the
// existing one: a real folder, not a symlink, owned by this user. Read or
// write access for others is removed. It reports whether it made dir.
func privateDir(dir string) (bool, error) {
	made := false
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := mkdirSearchable(filepath.Dir(dir)); err != nil {
			return false, err
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return false, err
		}
		made = true
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return false, notPrivate(dir, "is a symlink or not a folder")
		}
		return false, fmt.Errorf("opening %s: %w", dir, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("checking %s: %w", dir, err)
	}
	if err := ownedByUs(dir, st.Uid); err != nil {
		return false, err
	}
	// Search (x) may stay: QEMU, run as its own user, reaches its files
	// through this folder (supervisor.QEMUUser.Grant); it lists nothing.
	if st.Mode&0o066 != 0 {
		if err := unix.Fchmod(fd, st.Mode&0o7711); err != nil {
			return false, fmt.Errorf("making %s private: %w", dir, err)
		}
	}
	return made, nil
}

// checkPrivate accepts a state path that is absent, or a regular file (a
// socket where sockets are allowed) of this user that is not a symlink.
func checkPrivate(path string, socketOK bool) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	switch m := st.Mode(); {
	case m&fs.ModeSymlink != 0:
		target, _ := os.Readlink(path)
		return notPrivate(path, fmt.Sprintf("is a symlink (to %s)", target))
	case socketOK && m&fs.ModeSocket != 0:
		// QEMU, run as its own user, makes its sockets; one a killed run
		// left is removed before QEMU starts, never connected to.
		return nil
	case m.IsRegular():
	default:
		return notPrivate(path, "is a "+m.Type().String()+", not a file")
	}
	return ownedByUs(path, st.Sys().(*syscall.Stat_t).Uid)
}

// openPrivate opens a file of the state folder (mode 0600 when created)
// without following a symlink, and refuses one another user owns.
func openPrivate(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.ELOOP) {
		return nil, notPrivate(path, "is a symlink")
	}
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	if err := ownedByUs(path, st.Uid); err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, notPrivate(path, "is not a regular file")
	}
	return f, nil
}

// readPrivate reads a small state file; a missing one is fs.ErrNotExist.
func readPrivate(path string, limit int64) ([]byte, error) {
	f, err := openPrivate(path, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// writePrivate replaces a state file's content, mode 0600.
func writePrivate(path string, data []byte) error {
	f, err := openPrivate(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func ownedByUs(path string, owner uint32) error {
	if uid := uint32(os.Geteuid()); owner != uid {
		return notPrivate(path, fmt.Sprintf("is owned by uid %d, not by vmrunner's uid %d", owner, uid))
	}
	return nil
}

func notPrivate(path, why string) error {
	return fmt.Errorf("%s %s: %w; vmrunner only uses its own files in the state folder "+
		"(remove it, or move the state folder aside to start over)", path, why, ErrNotPrivate)
}
