package image

import (
	"context"
	"fmt"
	"os"
)

// ConvertArgs is the qemu-img argument list (without the program name)
// that converts src, of format f, into a qcow2 file dst.
func ConvertArgs(f Format, src, dst string) []string {
	return []string{"convert", "-q", "-f", string(f), "-O", "qcow2", src, dst}
}

// Convert makes the qcow2 copy dst of src once: run carries out qemu-img
// with the given arguments (the supervisor's reaper owns every child, so
// this package starts none). Concurrent callers take turns on dst's lock,
// and dst appears whole or not at all.
func Convert(ctx context.Context, f Format, src, dst string, run func(args []string) error) error {
	unlock, err := lockFile(ctx, dst+".lock", nil)
	if err != nil {
		return err
	}
	defer unlock()
	if fi, err := os.Stat(dst); err == nil && fi.Mode().IsRegular() {
		return nil
	}
	tmp := dst + ".tmp"
	os.Remove(tmp)
	if err := run(ConvertArgs(f, src, tmp)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("qemu-img convert %s to qcow2: %w", src, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
