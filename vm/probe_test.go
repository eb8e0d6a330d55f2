package vm

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMountedAt(t *testing.T) {
	const mountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 22 0:31 / /data rw,relatime - ext4 /dev/sdb1 rw
36 22 8:1 /srv/vm\040images /var/lib/vm\040images rw - ext4 /dev/sda1 rw
37 22 0:40 / /odd\134name\011tab rw - tmpfs tmpfs rw
`
	tests := []struct {
		path string
		want bool
	}{
		{"/", true},
		{"/data", true},
		{"/data/vms", false},
		{"/var/lib/vm images", true}, // a bind mount: same device as /
		{"/var/lib/vm\\040images", false},
		{"/odd\\name\ttab", true},
		{"/srv", false},
	}
	for _, tc := range tests {
		if got := MountedAt(mountinfo, tc.path); got != tc.want {
			t.Errorf("MountedAt(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
	if MountedAt("garbage\n\n", "/") {
		t.Error("a malformed mountinfo lists /")
	}
}

func TestIsMountPoint(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		dir  string
		want bool
	}{
		{"/", true},
		{"/proc", true},
		{filepath.Join(dir, "missing"), false},
	}
	for _, tc := range tests {
		if got := IsMountPoint(tc.dir); got != tc.want {
			t.Errorf("IsMountPoint(%s) = %v, want %v", tc.dir, got, tc.want)
		}
	}
	// A fresh folder is no mount point unless the test's TMPDIR itself is.
	if IsMountPoint(dir) {
		t.Errorf("IsMountPoint(%s) = true for a fresh folder", dir)
	}
}

func TestDirectIOWorks(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Join(dir, "vms", "not-yet")} {
		if !DirectIOWorks(d) {
			t.Skipf("%s refuses O_DIRECT here", d)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Errorf("the probe left %v (%v)", entries, err)
	}
	// /dev/shm is tmpfs: O_DIRECT is refused before Linux 6.6 and works
	// since; either way the probe must leave nothing behind.
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		shm, err := os.MkdirTemp("/dev/shm", "vmrunner-probe-")
		if err != nil {
			t.Skip(err)
		}
		defer os.RemoveAll(shm)
		t.Logf("tmpfs takes O_DIRECT: %v", DirectIOWorks(shm))
		if entries, _ := os.ReadDir(shm); len(entries) != 0 {
			t.Errorf("the probe left %v on tmpfs", entries)
		}
	}
}
