package vm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DirectIOWorks reports whether a file in dir (or, before dir exists, in the
// nearest folder above it, where it will be made) opens with O_DIRECT.
// Failures other than the filesystem refusing O_DIRECT count as working:
// start-up meets and reports them itself.
func DirectIOWorks(dir string) bool {
	probe := filepath.Join(existingAncestor(dir), fmt.Sprintf(".vmrunner-odirect-%d", os.Getpid()))
	fd, err := unix.Open(probe, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EEXIST) {
		return true
	}
	// Linux creates the file before it checks O_DIRECT, so remove it even
	// when the open failed.
	unix.Unlink(probe)
	if err == nil {
		unix.Close(fd)
		return true
	}
	return !errors.Is(err, unix.EINVAL)
}

func existingAncestor(dir string) string {
	for {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// IsMountPoint reports whether dir is a mount point: listed as one in
// /proc/self/mountinfo (which also knows bind mounts from the same
// filesystem), or on another device than its parent.
func IsMountPoint(dir string) bool {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && MountedAt(string(b), real) {
		return true
	}
	var st, parent unix.Stat_t
	if unix.Stat(real, &st) != nil || unix.Stat(filepath.Dir(real), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// MountedAt reports whether mountinfo (proc(5) format) lists a mount on
// path.
func MountedAt(mountinfo, path string) bool {
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountPath(f[4]) == path {
			return true
		}
	}
	return false
}

// unescapeMountPath undoes the kernel's octal escapes (\040 for a space,
// also tab, newline and backslash).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
