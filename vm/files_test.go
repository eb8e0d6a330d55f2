package vm

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheckPrivate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tt := range []struct {
		path     string
		socketOK bool
		ok       bool
	}{
		{filepath.Join(dir, "absent"), false, true},
		{file, false, true},
		{link, false, false},
		{link, true, false},
		{sub, false, false},
		{sock, false, false},
		{sock, true, true},
	} {
		err := checkPrivate(tt.path, tt.socketOK)
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrNotPrivate) {
			t.Errorf("checkPrivate(%s, socketOK=%v) = %v, want ok=%v", filepath.Base(tt.path), tt.socketOK, err, tt.ok)
		}
	}
}

func TestOpenPrivate(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := writePrivate(link, []byte("x")); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("writePrivate through a symlink: %v, want ErrNotPrivate", err)
	}
	if _, err := readPrivate(link, 10); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("readPrivate through a symlink: %v, want ErrNotPrivate", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "outside" {
		t.Errorf("the target became %q", b)
	}
	file := filepath.Join(dir, "file")
	if err := writePrivate(file, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("made with mode %v, want 0600", st.Mode().Perm())
	}
	if b, err := readPrivate(file, 3); err != nil || string(b) != "sec" {
		t.Errorf("readPrivate with a limit of 3 = %q, %v", b, err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(file, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := readPrivate(file, 10); !errors.Is(err, ErrNotPrivate) {
			t.Errorf("a file of uid 65534: %v, want ErrNotPrivate", err)
		}
	}
}

func TestPrivateDir(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b")
	made, err := privateDir(dir)
	if err != nil || !made {
		t.Fatalf("privateDir of a new folder = %v, %v", made, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if made, err := privateDir(dir); err != nil || made {
		t.Fatalf("privateDir of an existing folder = %v, %v", made, err)
	}
	// Others lose read and write; search stays for QEMU's own user.
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o711 {
		t.Errorf("mode %v, want it narrowed to 0711", st.Mode().Perm())
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := privateDir(link); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("privateDir of a symlink: %v, want ErrNotPrivate", err)
	}
}

// A DATA_DIR that vmrunner makes must let a confined QEMU pass through to
// the state folder: searchable, not listable, despite umask 077.
func TestPrivateDirMakesSearchableParents(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	root := t.TempDir()
	state := filepath.Join(root, "data", "vms", "vm")
	if _, err := privateDir(state); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(root, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o711 {
		t.Errorf("made DATA_DIR has mode %v, want 0711", st.Mode().Perm())
	}
}
