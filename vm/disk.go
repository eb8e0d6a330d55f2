package vm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// Image describes a disk image file as its header tells.
type Image struct {
	Format      string // "qcow2" or "raw"
	VirtualSize int64  // bytes the guest sees
	Backing     string // qcow2 backing file, if any
}

// ParseQcow2Header reads the fields vmrunner needs from the first bytes of
// a file. It returns ok=false for anything that is not qcow2.
func ParseQcow2Header(h []byte) (img Image, ok bool, err error) {
	if len(h) < 4 || string(h[:4]) != "QFI\xfb" {
		return Image{}, false, nil
	}
	if len(h) < 32 {
		return Image{}, true, errors.New("qcow2 header is truncated")
	}
	version := binary.BigEndian.Uint32(h[4:8])
	if version < 2 || version > 3 {
		return Image{}, true, fmt.Errorf("qcow2 version %d is not supported", version)
	}
	img.Format = "qcow2"
	size := binary.BigEndian.Uint64(h[24:32])
	if size > 1<<60 {
		return Image{}, true, errors.New("qcow2 size field is out of range")
	}
	img.VirtualSize = int64(size)
	off := binary.BigEndian.Uint64(h[8:16])
	n := binary.BigEndian.Uint32(h[16:20])
	if off != 0 {
		if n > 1023 || off > uint64(len(h)) || off+uint64(n) > uint64(len(h)) {
			return Image{}, true, errors.New("qcow2 backing file name lies outside the header read")
		}
		img.Backing = string(h[off : off+uint64(n)])
	}
	return img, true, nil
}

// InspectImage reads path's header: qcow2 by its magic, anything else raw.
func InspectImage(path string) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return Image{}, err
	}
	defer f.Close()
	h := make([]byte, 4096)
	n, err := io.ReadFull(f, h)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return Image{}, fmt.Errorf("reading %s: %w", path, err)
	}
	img, isQcow, err := ParseQcow2Header(h[:n])
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", path, err)
	}
	if isQcow {
		return img, nil
	}
	st, err := f.Stat()
	if err != nil {
		return Image{}, err
	}
	return Image{Format: "raw", VirtualSize: st.Size()}, nil
}

// DiskAction is what must happen to the VM's overlay before boot.
type DiskAction struct {
	Create     bool   // qemu-img create
	Resize     bool   // qemu-img resize (grow)
	Size       int64  // target virtual size in bytes
	BackingFmt string // with Create and a base
	Warning    string // e.g. a refused shrink
}

// PlanDisk decides how to bring the overlay to the wanted size, asked for
// by the variable sizeVar. base is nil for a blank disk; overlay is nil
// when there is none yet.
func PlanDisk(base *Image, basePath string, overlay *Image, want int64, sizeVar string) (DiskAction, error) {
	if overlay == nil {
		size := want
		if base != nil && base.VirtualSize > size {
			size = base.VirtualSize // never hide part of the base image
		}
		a := DiskAction{Create: true, Size: size}
		if base != nil {
			a.BackingFmt = base.Format
		}
		return a, nil
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
	switch {
	case a.Create && basePath != "":
		return []string{"create", "-q", "-f", "qcow2", "-F", a.BackingFmt, "-b", basePath, overlay, strconv.FormatInt(a.Size, 10)}
	case a.Create:
		return []string{"create", "-q", "-f", "qcow2", overlay, strconv.FormatInt(a.Size, 10)}
	case a.Resize:
		return []string{"resize", "-q", overlay, strconv.FormatInt(a.Size, 10)}
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
