package image

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
