package vm

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"github.com/vmrunner/vmrunner/image"
	"github.com/vmrunner/vmrunner/qemu"
)

// qemuImg runs qemu-img with qemu.ChildEnv only: it needs none of
// vmrunner's environment, which may hold secrets (GUEST_PASSWORD). It dies
// with vmrunner: Pdeathsig follows the thread that forks, not the process,
// so this goroutine holds its thread until qemu-img has ended.
func qemuImg(ctx context.Context, run RunFunc, args ...string) ([]byte, error) {
	cmd := exec.Command("qemu-img", args...)
	cmd.Env = qemu.ChildEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return run(ctx, cmd)
}

// DiskAction is what must happen to the VM's overlay before boot.
type DiskAction struct {
	Create     bool   // qemu-img create
	Resize     bool   // qemu-img resize (grow)
	Size       int64  // target virtual size in bytes
	BackingFmt string // with Create and a base
	// Preallocate reserves the disk's space on the host (ALLOCATE=1):
	// falloc, and for an overlay on a base extended L2 entries, without
	// which qcow2 cannot preallocate over a backing file.
	Preallocate bool
	Warning     string // e.g. a refused shrink
}

// PlanDisk decides how to bring the overlay to the wanted size, asked for
// by the variable sizeVar. base is nil for a blank disk; overlay is nil
// when there is none yet.
func PlanDisk(base *image.Info, basePath string, overlay *image.Info, want int64, sizeVar string) (DiskAction, error) {
	if overlay == nil {
		size := want
		if base != nil && base.VirtualSize > size {
			size = base.VirtualSize // never hide part of the base image
		}
		a := DiskAction{Create: true, Size: size}
		if base != nil {
			a.BackingFmt = string(base.Format)
		}
		return a, nil
	}
	// The overlay is ours, but DATA_DIR may be a shared volume: it may name
	// its base and nothing else.
	for _, r := range overlay.Refs {
		if r.Kind != "backing file" {
			return DiskAction{}, fmt.Errorf("the VM's disk refers to %s: remove the state folder to start over", r)
		}
	}
	if base == nil && overlay.Backing != "" {
		return DiskAction{}, fmt.Errorf("the VM's disk was made on top of %q, but BOOT_FROM is now blank: set BOOT_FROM back, or remove the state folder to start over", overlay.Backing)
	}
	if base != nil && overlay.Backing != basePath {
		return DiskAction{}, fmt.Errorf("the VM's disk was made on top of %q, but BOOT_FROM is now %q: set BOOT_FROM back, or remove the state folder to start over", overlay.Backing, basePath)
	}
	switch {
	case want > overlay.VirtualSize:
		return DiskAction{Resize: true, Size: want}, nil
	case want < overlay.VirtualSize:
		return DiskAction{Size: overlay.VirtualSize, Warning: fmt.Sprintf("%s is smaller than the disk (%s < %s): disks grow, never shrink; keeping %s",
			sizeVar, human(want), human(overlay.VirtualSize), human(overlay.VirtualSize))}, nil
	}
	return DiskAction{Size: want}, nil
}

// QemuImgArgs returns the qemu-img arguments that carry out a.
func (a DiskAction) QemuImgArgs(overlay, basePath string) []string {
	size := strconv.FormatInt(a.Size, 10)
	switch {
	case a.Create && basePath != "":
		opts := []string{"-F", a.BackingFmt, "-b", basePath}
		if a.Preallocate {
			opts = append(opts, "-o", "extended_l2=on,preallocation=falloc")
		}
		return append(append([]string{"create", "-q", "-f", "qcow2"}, opts...), overlay, size)
	case a.Create && a.Preallocate:
		return []string{"create", "-q", "-f", "qcow2", "-o", "preallocation=falloc", overlay, size}
	case a.Create:
		return []string{"create", "-q", "-f", "qcow2", overlay, size}
	case a.Resize && a.Preallocate:
		return []string{"resize", "-q", "--preallocation=falloc", overlay, size}
	case a.Resize:
		return []string{"resize", "-q", overlay, size}
	}
	return nil
}

func human(b int64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%dG", b>>30)
	case b >= 1<<20:
		return fmt.Sprintf("%dM", b>>20)
	}
	return fmt.Sprintf("%d bytes", b)
}

// absPath makes BOOT_FROM absolute, since the overlay records it and the
// supervisor may later run from another directory.
func absPath(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("BOOT_FROM %q: %w", p, err)
	}
	return a, nil
}
