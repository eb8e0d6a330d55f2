package image

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Info is what an image's header says about it.
type Info struct {
	Format      Format
	VirtualSize int64 // bytes the guest sees
	// Backing is the backing file a qcow2 (with BackingFormat) or a sparse
	// vmdk (its parent) records.
	Backing       string
	BackingFormat string
	// Refs is every other file or network location the image makes QEMU
	// open: a backing file, an external data file, vmdk extents, a parent
	// disk. An image given by a user must have none.
	Refs []Ref
}

// Ref is one reference an image makes to something outside itself.
type Ref struct {
	Kind string // e.g. "backing file", "external data file", "extent"
	Name string // as recorded in the image; may be empty (named at open time)
}

func (r Ref) String() string {
	if r.Name == "" {
		return r.Kind + " (named when opened)"
	}
	return fmt.Sprintf("%s %q", r.Kind, r.Name)
}

// RefError refuses an image that refers to something outside itself.
type RefError struct {
	Path   string
	Format Format
	Refs   []Ref
}

func (e *RefError) Error() string {
	refs := make([]string, len(e.Refs))
	for i, r := range e.Refs {
		refs[i] = r.String()
	}
	return fmt.Sprintf("%s image %s refers to %s: vmrunner opens no file or address an image names", e.Format, e.Path, strings.Join(refs, ", "))
}

// SelfContained returns a *RefError when the image refers to anything
// outside itself.
func (i Info) SelfContained(path string) error {
	if len(i.Refs) == 0 {
		return nil
	}
	return &RefError{Path: path, Format: i.Format, Refs: i.Refs}
}

// headerSize covers the deepest magic checked: ISO 9660's at 0x8001.
const headerSize = 0x8001 + 5

// maxMetadata bounds what one header structure may make us read (a qcow2
// cluster, a vmdk descriptor), so that a crafted field cannot make
// inspection allocate gigabytes.
const maxMetadata = 2 << 20

// Inspect reads path's headers: its format (by content, never its name),
// virtual size and every reference it makes to another file. It is pure
// parsing: nothing the image names is opened. A compressed file is an
// error: it must be unpacked first (Fetch does so for downloads).
func Inspect(path string) (Info, error) {
	return inspectFile(path, "")
}

// InspectAs is Inspect with the format pinned: a header of another format
// is an error, and a pinned raw image is never parsed for references (its
// bytes are the guest's, whatever they look like).
func InspectAs(path string, f Format) (Info, error) {
	return inspectFile(path, f)
}

func inspectFile(path string, pinned Format) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	// Seeking gives a block device's size too, where Stat says 0.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", path, err)
	}
	info, err := inspect(f, size, filepath.Base(path), pinned)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// FormatMismatchError is a pinned format the header contradicts.
type FormatMismatchError struct{ Pinned, Found Format }

func (e *FormatMismatchError) Error() string {
	return fmt.Sprintf("the header says %s, not %s", e.Found, e.Pinned)
}

// inspect parses the image in r (size bytes, named name, for a vmdk's
// extents naming itself); pinned, when set, is the format to read it as.
func inspect(r io.ReaderAt, size int64, name string, pinned Format) (Info, error) {
	h := make([]byte, min(size, headerSize))
	if _, err := r.ReadAt(h, 0); err != nil && !errors.Is(err, io.EOF) {
		return Info{}, err
	}
	if pinned == FormatRaw {
		return Info{Format: FormatRaw, VirtualSize: size}, nil
	}
	if c := compressionOf(h); c != "" {
		return Info{}, fmt.Errorf("the file is %s-compressed: unpack it first", c)
	}
	if a := archiveOf(h); a != "" {
		return Info{}, fmt.Errorf("the file is a %s archive: unpack it first", a)
	}
	found := detect(h)
	if pinned != "" && found != pinned {
		return Info{}, &FormatMismatchError{Pinned: pinned, Found: found}
	}
	switch found {
	case FormatQcow2:
		return inspectQcow2(r, size)
	case FormatVMDK:
		return inspectVMDK(r, size, h, name)
	case FormatVHDX:
		return inspectVHDX(r)
	case FormatVPC:
		return inspectVPC(r, size, h)
	case FormatVDI:
		return inspectVDI(h)
	}
	return Info{Format: found, VirtualSize: size}, nil
}

func detect(h []byte) Format {
	switch {
	case bytes.HasPrefix(h, []byte("QFI\xfb")):
		return FormatQcow2
	case bytes.HasPrefix(h, []byte("KDMV")), bytes.HasPrefix(h, []byte("COWD")),
		isVMDKDescriptor(h):
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

// readAt reads n bytes at off, refusing sizes past maxMetadata or the file.
func readAt(r io.ReaderAt, size, off, n int64, what string) ([]byte, error) {
	if n < 0 || n > maxMetadata || off < 0 || off > size || n > size-off {
		return nil, fmt.Errorf("%s (%d bytes at %d) lies outside the file", what, n, off)
	}
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return b, nil
}

// qcow2 header fields and extensions (QEMU's docs/interop/qcow2.txt).
const (
	qcow2ExtEnd           = 0
	qcow2ExtBackingFormat = 0xe2792aca
	qcow2ExtDataFile      = 0x44415441
	qcow2IncompatDataFile = 1 << 2
	qcow2MaxBackingName   = 1023 // QEMU refuses longer names
)

func inspectQcow2(r io.ReaderAt, size int64) (Info, error) {
	h, err := readAt(r, size, 0, min(size, 104), "qcow2 header")
	if err != nil {
		return Info{}, err
	}
	if len(h) < 72 {
		return Info{}, errors.New("qcow2 header is truncated")
	}
	be := binary.BigEndian
	version := be.Uint32(h[4:])
	if version < 2 || version > 3 {
		return Info{}, fmt.Errorf("qcow2 version %d is not supported", version)
	}
	clusterBits := be.Uint32(h[20:])
	if clusterBits < 9 || clusterBits > 21 {
		return Info{}, fmt.Errorf("qcow2 cluster bits %d out of range", clusterBits)
	}
	vsize := be.Uint64(h[24:])
	if vsize > 1<<60 {
		return Info{}, errors.New("qcow2 size field is out of range")
	}
	info := Info{Format: FormatQcow2, VirtualSize: int64(vsize)}
	// Everything read below lies in the first cluster, as QEMU requires.
	cluster := min(int64(1)<<clusterBits, size)
	first, err := readAt(r, size, 0, cluster, "qcow2 first cluster")
	if err != nil {
		return Info{}, err
	}
	extStart, incompat := uint64(72), uint64(0)
	if version == 3 {
		if len(h) < 104 {
			return Info{}, errors.New("qcow2 v3 header is truncated")
		}
		incompat = be.Uint64(h[72:])
		extStart = uint64(be.Uint32(h[100:]))
		if extStart < 104 {
			return Info{}, fmt.Errorf("qcow2 header length %d is too short", extStart)
		}
	}
	if off, n := be.Uint64(h[8:]), uint64(be.Uint32(h[16:])); off != 0 && n != 0 {
		if n > qcow2MaxBackingName || off > uint64(len(first)) || n > uint64(len(first))-off {
			return Info{}, errors.New("qcow2 backing file name lies outside the first cluster")
		}
		info.Backing = string(first[off : off+n])
		info.Refs = append(info.Refs, Ref{Kind: "backing file", Name: info.Backing})
	}
	dataFile, hasDataFile := "", incompat&qcow2IncompatDataFile != 0
	for off := extStart; ; {
		if off+8 > uint64(len(first)) {
			if off == uint64(len(first)) {
				break // no end marker, but the cluster ends: QEMU reads as far
			}
			return Info{}, errors.New("qcow2 header extension lies outside the first cluster")
		}
		typ, n := be.Uint32(first[off:]), uint64(be.Uint32(first[off+4:]))
		off += 8
		if typ == qcow2ExtEnd {
			break
		}
		if n > uint64(len(first))-off {
			return Info{}, fmt.Errorf("qcow2 header extension %#x lies outside the first cluster", typ)
		}
		data := first[off : off+n]
		switch typ {
		case qcow2ExtBackingFormat:
			info.BackingFormat = string(data)
		case qcow2ExtDataFile:
			dataFile, hasDataFile = string(data), true
		}
		off += (n + 7) &^ 7
	}
	if hasDataFile {
		info.Refs = append(info.Refs, Ref{Kind: "external data file", Name: dataFile})
	}
	return info, nil
}

// isVMDKDescriptor tells a text descriptor as QEMU's probe does: after
// blank and comment lines, the first line is version=1, 2 or 3.
func isVMDKDescriptor(h []byte) bool {
	for line := range bytes.Lines(h) {
		t := bytes.TrimLeft(line, " \t")
		if len(bytes.TrimSpace(t)) == 0 || t[0] == '#' {
			continue
		}
		for _, v := range []string{"version=1", "version=2", "version=3"} {
			if bytes.HasPrefix(t, []byte(v)) {
				return true
			}
		}
		return false
	}
	return false
}

// vmdkSparseHeader holds the KDMV fields inspection needs.
const (
	vmdkCapacityAt   = 12 // sectors, little-endian u64
	vmdkDescOffsetAt = 28
	vmdkDescSizeAt   = 36
)

func inspectVMDK(r io.ReaderAt, size int64, h []byte, name string) (Info, error) {
	info := Info{Format: FormatVMDK}
	le := binary.LittleEndian
	switch {
	case bytes.HasPrefix(h, []byte("KDMV")):
		if len(h) < 44 {
			return Info{}, errors.New("vmdk header is truncated")
		}
		capacity := le.Uint64(h[vmdkCapacityAt:])
		if capacity > 1<<51 {
			return Info{}, errors.New("vmdk capacity is out of range")
		}
		info.VirtualSize = int64(capacity) * 512
		info.setVMDKParent(h, vmdkSparseParentAt)
		descOff, descSize := le.Uint64(h[vmdkDescOffsetAt:]), le.Uint64(h[vmdkDescSizeAt:])
		if descOff == 0 || descSize == 0 {
			return info, nil
		}
		if descOff > 1<<52 || descSize > maxMetadata/512 {
			return Info{}, errors.New("vmdk embedded descriptor is out of range")
		}
		desc, err := readAt(r, size, int64(descOff)*512, int64(descSize)*512, "vmdk embedded descriptor")
		if err != nil {
			return Info{}, err
		}
		if capacity != 0 {
			// QEMU opens a sparse file with a capacity as its own single
			// extent and never the extents its embedded descriptor lists:
			// these name the file as it was called when made (a
			// streamOptimized disk out of an OVA carries its member name).
			return info, nil
		}
		// With no capacity QEMU opens the descriptor's extents instead.
		d := parseVMDKDescriptor(desc)
		for _, e := range d.extents {
			if e.file != "" && filepath.Clean(e.file) != name {
				info.Refs = append(info.Refs, Ref{Kind: "extent", Name: e.file})
			}
		}
		info.VirtualSize = d.sectors * 512
	case bytes.HasPrefix(h, []byte("COWD")):
		// ESX sparse: QEMU reads it as one self-contained extent.
		if len(h) < 16 {
			return Info{}, errors.New("vmdk header is truncated")
		}
		info.VirtualSize = int64(le.Uint32(h[12:])) * 512
		info.setVMDKParent(h, vmdkSparseParentAt)
	default:
		desc, err := readAt(r, size, 0, min(size, maxMetadata), "vmdk descriptor")
		if err != nil {
			return Info{}, err
		}
		d := parseVMDKDescriptor(desc)
		info.VirtualSize = d.sectors * 512
		// A descriptor file holds no data: every extent is another file.
		for _, e := range d.extents {
			info.Refs = append(info.Refs, Ref{Kind: "extent", Name: e.file})
		}
		info.setVMDKParent(desc, 0)
	}
	return info, nil
}

// QEMU looks for a vmdk's parent ("parentFileNameHint") anywhere in the
// vmdkDescSize bytes at 0 (a descriptor file) or at 512 (a sparse file,
// whatever its header says of its descriptor), up to a NUL, and takes the
// text two bytes after the key up to the next quote as a backing file.
const (
	vmdkSparseParentAt = 512
	vmdkDescSize       = 20 * 512
	vmdkParentKey      = "parentFileNameHint"
)

func (i *Info) setVMDKParent(b []byte, at int) {
	if len(b) <= at {
		return
	}
	b = b[at:min(len(b), at+vmdkDescSize)]
	if n := bytes.IndexByte(b, 0); n >= 0 {
		b = b[:n]
	}
	k := bytes.Index(b, []byte(vmdkParentKey))
	if k < 0 || k+len(vmdkParentKey)+2 > len(b) {
		return
	}
	name := b[k+len(vmdkParentKey)+2:]
	end := bytes.IndexByte(name, '"')
	if end <= 0 {
		return // QEMU refuses an unterminated name, and follows no empty one
	}
	i.Backing, i.BackingFormat = string(name[:end]), string(FormatVMDK)
	i.Refs = append(i.Refs, Ref{Kind: "parent", Name: i.Backing})
}

type vmdkExtent struct {
	file string // empty for ZERO extents
}

type vmdkDescriptor struct {
	extents []vmdkExtent
	sectors int64
}

// parseVMDKDescriptor reads extent lines (`RW 2048 FLAT "f.vmdk" 0`). It
// is lenient like QEMU: unknown lines are skipped, a NUL ends the text.
func parseVMDKDescriptor(b []byte) vmdkDescriptor {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	var d vmdkDescriptor
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		access, rest, _ := strings.Cut(line, " ")
		if access != "RW" && access != "RDONLY" && access != "NOACCESS" {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 2 {
			continue
		}
		var sectors int64
		if _, err := fmt.Sscan(fields[0], &sectors); err == nil && sectors > 0 && sectors < 1<<51 {
			d.sectors = min(d.sectors+sectors, 1<<51)
		}
		e := vmdkExtent{}
		if fields[1] != "ZERO" {
			// The file name is quoted and may hold spaces.
			if _, q, ok := strings.Cut(rest, `"`); ok {
				e.file, _, _ = strings.Cut(q, `"`)
			} else if len(fields) > 2 {
				e.file = fields[2]
			}
		}
		if e.file != "" {
			d.extents = append(d.extents, e)
		}
	}
	return d
}

// VHDX (MS-VHDX): the region table at 192 KiB locates the metadata
// region, whose table lists items by GUID.
var (
	vhdxMetadataRegion = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	vhdxFileParameters = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	vhdxVirtualSize    = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	vhdxParentLocator  = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
)

const (
	vhdxRegionTableAt = 192 << 10
	vhdxHasParent     = 1 << 1
)

func inspectVHDX(r io.ReaderAt) (Info, error) {
	le := binary.LittleEndian
	rt := make([]byte, 64<<10)
	if _, err := r.ReadAt(rt, vhdxRegionTableAt); err != nil {
		return Info{}, fmt.Errorf("reading the vhdx region table: %w", err)
	}
	if string(rt[:4]) != "regi" {
		return Info{}, errors.New("vhdx region table signature missing")
	}
	n := int(min(le.Uint32(rt[8:]), 2047))
	var metaOff, metaLen uint64
	for i := range n {
		e := rt[16+32*i : 16+32*(i+1)]
		if bytes.Equal(e[:16], vhdxMetadataRegion[:]) {
			metaOff, metaLen = le.Uint64(e[16:]), uint64(le.Uint32(e[24:]))
		}
	}
	if metaOff == 0 || metaLen < 64<<10 || metaLen > maxMetadata || metaOff > 1<<50 {
		return Info{}, errors.New("vhdx metadata region missing or out of range")
	}
	meta := make([]byte, metaLen)
	if _, err := r.ReadAt(meta, int64(metaOff)); err != nil {
		return Info{}, fmt.Errorf("reading the vhdx metadata region: %w", err)
	}
	if string(meta[:8]) != "metadata" {
		return Info{}, errors.New("vhdx metadata table signature missing")
	}
	info := Info{Format: FormatVHDX}
	count := int(min(uint32(le.Uint16(meta[10:])), 2047))
	item := func(e []byte) ([]byte, bool) {
		off, ln := uint64(le.Uint32(e[16:])), uint64(le.Uint32(e[20:]))
		if off > metaLen || ln > metaLen-off {
			return nil, false
		}
		return meta[off : off+ln], true
	}
	for i := range count {
		e := meta[32+32*i : 32+32*(i+1)]
		data, ok := item(e)
		if !ok {
			return Info{}, errors.New("vhdx metadata item lies outside its region")
		}
		switch {
		case bytes.Equal(e[:16], vhdxVirtualSize[:]) && len(data) >= 8:
			if s := le.Uint64(data); s <= 1<<60 {
				info.VirtualSize = int64(s)
			}
		case bytes.Equal(e[:16], vhdxFileParameters[:]) && len(data) >= 8:
			if le.Uint32(data[4:])&vhdxHasParent != 0 {
				info.Refs = append(info.Refs, Ref{Kind: "parent (differencing disk)"})
			}
		case bytes.Equal(e[:16], vhdxParentLocator[:]):
			info.Refs = append(info.Refs, Ref{Kind: "parent locator"})
		}
	}
	return info, nil
}

// guid lays a GUID out as it is stored: first three groups little-endian.
func guid(s string) [16]byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		panic("bad GUID " + s)
	}
	slices.Reverse(b[0:4])
	slices.Reverse(b[4:6])
	slices.Reverse(b[6:8])
	return [16]byte(b)
}

// VHD (vpc): a 512-byte footer, copied at the start of dynamic disks.
const (
	vpcCurrentSizeAt = 48
	vpcDiskTypeAt    = 60
	vpcDifferencing  = 4
	vpcParentNameAt  = 64 // in the dynamic header, 512 bytes of UTF-16BE
)

func inspectVPC(r io.ReaderAt, size int64, h []byte) (Info, error) {
	if len(h) < 512 {
		return Info{}, errors.New("vhd footer is truncated")
	}
	be := binary.BigEndian
	info := Info{Format: FormatVPC}
	if s := be.Uint64(h[vpcCurrentSizeAt:]); s <= 1<<60 {
		info.VirtualSize = int64(s)
	}
	if be.Uint32(h[vpcDiskTypeAt:]) != vpcDifferencing {
		return info, nil
	}
	ref := Ref{Kind: "parent (differencing disk)"}
	if off := be.Uint64(h[16:]); off < 1<<50 {
		if dyn, err := readAt(r, size, int64(off), 1024, "vhd dynamic header"); err == nil {
			ref.Name = utf16BE(dyn[vpcParentNameAt : vpcParentNameAt+512])
		}
	}
	info.Refs = append(info.Refs, ref)
	return info, nil
}

func utf16BE(b []byte) string {
	var s []rune
	for i := 0; i+1 < len(b); i += 2 {
		c := rune(b[i])<<8 | rune(b[i+1])
		if c == 0 {
			break
		}
		s = append(s, c)
	}
	return string(s)
}

// VDI: fields of VirtualBox's header 1.1, after the 64-byte banner.
const (
	vdiTypeAt    = 0x4c
	vdiSizeAt    = 0x170
	vdiParentAt  = 0x1b8 // UUID of the parent image, zero for none
	vdiHeaderEnd = 0x1c8
	vdiTypeUndo  = 3
	vdiTypeDiff  = 4
	vdiVersionAt = 0x44
	vdiVersion11 = 0x00010001
)

func inspectVDI(h []byte) (Info, error) {
	if len(h) < vdiHeaderEnd {
		return Info{}, errors.New("vdi header is truncated")
	}
	le := binary.LittleEndian
	info := Info{Format: FormatVDI}
	if s := le.Uint64(h[vdiSizeAt:]); s <= 1<<60 {
		info.VirtualSize = int64(s)
	}
	if le.Uint32(h[vdiVersionAt:]) != vdiVersion11 {
		return info, nil
	}
	typ := le.Uint32(h[vdiTypeAt:])
	if typ == vdiTypeUndo || typ == vdiTypeDiff || !bytes.Equal(h[vdiParentAt:vdiHeaderEnd], make([]byte, 16)) {
		info.Refs = append(info.Refs, Ref{Kind: "parent (differencing disk)"})
	}
	return info, nil
}
