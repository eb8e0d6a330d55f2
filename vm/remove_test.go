package vm

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCleanup(t *testing.T) {
	dir := t.TempDir()
	paths := Paths{State: filepath.Join(dir, "vms", "vm"), Lock: filepath.Join(dir, "vms", "vm", "lock")}

	if removed, err := Cleanup(paths); err != nil || removed {
		t.Fatalf("Cleanup without a folder = %v, %v; want false, nil", removed, err)
	}

	if err := os.MkdirAll(filepath.Join(paths.State, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"disk.qcow2", "sub/x", "lock"} {
		if err := os.WriteFile(filepath.Join(paths.State, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A running vmrunner holds the lock: nothing is removed.
	held, err := os.OpenFile(paths.Lock, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(held.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := Cleanup(paths); !errors.Is(err, ErrRunning) {
		t.Errorf("Cleanup of a running VM = %v, want ErrRunning", err)
	}
	if _, err := os.Stat(filepath.Join(paths.State, "disk.qcow2")); err != nil {
		t.Errorf("the running VM's disk is gone: %v", err)
	}
	held.Close()

	if removed, err := Cleanup(paths); err != nil || !removed {
		t.Fatalf("Cleanup = %v, %v; want true, nil", removed, err)
	}
	if _, err := os.Lstat(paths.State); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state folder still there: %v", err)
	}
}

func TestCleanupRefusesASymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "vm")
	if err := os.Symlink(target, state); err != nil {
		t.Fatal(err)
	}
	if _, err := Cleanup(Paths{State: state, Lock: filepath.Join(state, "lock")}); err == nil {
		t.Error("Cleanup followed a symlinked state folder")
	}
	if _, err := os.Stat(filepath.Join(target, "keep")); err != nil {
		t.Errorf("a file behind the symlink is gone: %v", err)
	}
}
