package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Format is a disk image format, named as qemu-img names it (iso aside,
// which QEMU reads as raw but which is a CD, not a disk to overlay).
type Format string

const (
	FormatRaw   Format = "raw"
	FormatQcow2 Format = "qcow2"
	FormatVMDK  Format = "vmdk"
	FormatVHDX  Format = "vhdx"
	FormatVPC   Format = "vpc" // VHD
	FormatVDI   Format = "vdi"
	FormatISO   Format = "iso"
)

// headerSize covers the deepest magic checked: ISO 9660's at 0x8001.
const headerSize = 0x8001 + 5

// Detect tells a disk image's format from its content, never its name.
// A compressed file is an error: it must be unpacked first (Fetch does so
// for downloads).
func Detect(path string) (Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := make([]byte, headerSize)
	n, err := io.ReadFull(f, h)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if c := compressionOf(h[:n]); c != "" {
		return "", fmt.Errorf("%s is %s-compressed: unpack it first", path, c)
	}
	return detect(h[:n]), nil
}

func detect(h []byte) Format {
	switch {
	case bytes.HasPrefix(h, []byte("QFI\xfb")):
		return FormatQcow2
	case bytes.HasPrefix(h, []byte("KDMV")), bytes.HasPrefix(h, []byte("COWD")),
		bytes.HasPrefix(h, []byte("# Disk DescriptorFile")):
		return FormatVMDK
	case bytes.HasPrefix(h, []byte("vhdxfile")):
		return FormatVHDX
	case bytes.HasPrefix(h, []byte("conectix")):
		return FormatVPC
	case len(h) >= 0x44 && binary.LittleEndian.Uint32(h[0x40:]) == 0xbeda107f:
		return FormatVDI
	case len(h) >= headerSize && string(h[0x8001:headerSize]) == "CD001":
		return FormatISO
	}
	return FormatRaw
}

// NeedsConversion tells whether QEMU should not back a qcow2 overlay with
// this format directly: it can, but vmdk, vhdx, vhd and vdi drivers are
// slower and less tested than qcow2, so such an image is converted once.
// An ISO needs no conversion; it is attached as a CD, not overlaid.
func NeedsConversion(f Format) bool {
	switch f {
	case FormatVMDK, FormatVHDX, FormatVPC, FormatVDI:
		return true
	}
	return false
}
