package image

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bodgit/sevenzip"
)

// Archives are recognised by content too: zip's local file header, 7z's
// signature, and the "ustar" magic of POSIX and GNU tar at offset 257.
var (
	zipMagic      = []byte("PK\x03\x04")
	sevenZipMagic = []byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c}
)

func archiveOf(header []byte) string {
	switch {
	case bytes.HasPrefix(header, zipMagic):
		return "zip"
	case bytes.HasPrefix(header, sevenZipMagic):
		return "7z"
	case isTar(header):
		return "tar"
	}
	return ""
}

func isTar(h []byte) bool { return len(h) >= 262 && string(h[257:262]) == "ustar" }

// diskExts are the member names taken for the disk image of an archive.
// Anything else (checksums, a README, an .ovf, a manifest) is skipped.
var diskExts = []string{".img", ".raw", ".qcow2", ".qcow", ".vmdk", ".vhd", ".vhdx", ".vdi", ".iso"}

func isDiskName(name string) bool {
	return slices.Contains(diskExts, strings.ToLower(path.Ext(name)))
}

// ArchiveError is an archive vmrunner takes no disk image from: the
// configuration (BOOT_FROM) has to change, so callers make it exit 2.
type ArchiveError struct {
	Kind    string   // tar, zip, 7z or ova
	Problem string   // what is wrong, naming the member
	Members []string // the candidates, when there is no single one
}

// maxListed bounds the member names kept for an error: a tar of a
// million empty files must not fill memory with their names.
const maxListed = 1000

func (e *ArchiveError) Error() string {
	msg := e.Kind + " archive: " + e.Problem
	if len(e.Members) > 0 {
		list := e.Members
		if len(list) > 20 {
			list = append(list[:20:20], fmt.Sprintf("… %d more", len(e.Members)-20))
		}
		msg += " (" + strings.Join(list, ", ") + ")"
	}
	return msg
}

// checkMember refuses a member whose name would leave the folder it is
// unpacked in, or that is anything but a file or a folder. vmrunner never
// writes a member under its own name; these archives are refused anyway,
// since no honest disk image comes in one.
func checkMember(kind, name string, mode fs.FileMode) error {
	clean := strings.ReplaceAll(name, `\`, "/")
	switch {
	case !filepath.IsLocal(strings.TrimSuffix(clean, "/")):
		return &ArchiveError{Kind: kind, Problem: fmt.Sprintf("member %q points outside the archive", name)}
	case mode&fs.ModeSymlink != 0:
		return &ArchiveError{Kind: kind, Problem: fmt.Sprintf("member %q is a symbolic link", name)}
	case !mode.IsRegular() && !mode.IsDir():
		return &ArchiveError{Kind: kind, Problem: fmt.Sprintf("member %q is not a regular file (%v)", name, mode.Type())}
	}
	return nil
}

// pickDisk is the one disk image among names; kind names the archive in
// errors.
func pickDisk(kind string, names []string) (string, error) {
	var disks []string
	for _, n := range names {
		if isDiskName(n) {
			disks = append(disks, n)
		}
	}
	switch len(disks) {
	case 1:
		return disks[0], nil
	case 0:
		return "", &ArchiveError{Kind: kind, Problem: "no disk image (" + strings.Join(diskExts, " ") + ") in it", Members: names}
	}
	return "", &ArchiveError{Kind: kind, Problem: "several disk images: unpack the one to boot and point BOOT_FROM at it", Members: disks}
}

// listed is one member of an archive whose members are all listed before
// any is read (zip's central directory, 7z's header).
type listed struct {
	name string
	mode fs.FileMode
	size uint64 // as the listing says
	open func() (io.ReadCloser, error)
}

// unpackListed writes the one disk image among members to j.dst: every
// member is checked before a byte is written, and the chosen one's size
// against the cap and the free space. exact bounds the member by its
// listed size, for readers that do not (archive/zip does).
func unpackListed(ctx context.Context, j unpackJob, kind string, members []listed, exact bool) (Digest, error) {
	var names []string
	for _, m := range members {
		if err := checkMember(kind, m.name, m.mode); err != nil {
			return Digest{}, err
		}
		if m.mode.IsRegular() {
			names = append(names, m.name)
		}
	}
	name, err := pickDisk(kind, names)
	if err != nil {
		return Digest{}, err
	}
	m := members[slices.IndexFunc(members, func(m listed) bool { return m.name == name })]
	if m.size > 1<<62 {
		return Digest{}, j.limitError(1 << 62)
	}
	if err := j.announced(int64(m.size)); err != nil {
		return Digest{}, err
	}
	r, err := m.open()
	if err != nil {
		return Digest{}, fmt.Errorf("%s member %s: %w", kind, name, err)
	}
	defer r.Close()
	j.log("unpacking archive member", "archive", kind, "member", name)
	var src io.Reader = r
	if exact {
		src = &exactReader{r: r, left: int64(m.size), name: name}
	}
	return writeImage(ctx, j, src)
}

// unpackZip writes the zip's one disk image to j.dst (archive/zip fails a
// member longer than it said).
func unpackZip(ctx context.Context, j unpackJob, f *os.File) (Digest, error) {
	fi, err := f.Stat()
	if err != nil {
		return Digest{}, err
	}
	z, err := zip.NewReader(f, fi.Size())
	if err != nil {
		return Digest{}, fmt.Errorf("zip: %w", err)
	}
	members := make([]listed, len(z.File))
	for i, m := range z.File {
		members[i] = listed{name: m.Name, mode: m.Mode(), size: m.UncompressedSize64, open: m.Open}
	}
	return unpackListed(ctx, j, "zip", members, false)
}

// unpack7z is unpackZip for 7-Zip archives (github.com/bodgit/sevenzip).
// The library parses and decodes hostile input in depth (coders, bind
// pairs, folders): a panic in it refuses the archive, removing what was
// written, instead of ending vmrunner.
func unpack7z(ctx context.Context, j unpackJob, f *os.File) (d Digest, err error) {
	defer func() {
		if p := recover(); p != nil {
			os.Remove(j.dst + ".tmp")
			d, err = Digest{}, fmt.Errorf("7z: malformed archive (%v)", p)
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return Digest{}, err
	}
	z, err := sevenzip.NewReader(f, fi.Size())
	if err != nil {
		return Digest{}, fmt.Errorf("7z: %w", err)
	}
	members := make([]listed, len(z.File))
	for i, m := range z.File {
		members[i] = listed{name: m.Name, mode: m.Mode(), size: m.UncompressedSize, open: m.Open}
	}
	return unpackListed(ctx, j, "7z", members, true)
}

// exactReader fails a member that holds more bytes than its header said.
type exactReader struct {
	r    io.Reader
	left int64
	name string
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		var b [1]byte
		if n, _ := e.r.Read(b[:]); n > 0 {
			return 0, fmt.Errorf("member %s is longer than its header says", e.name)
		}
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), e.left)]
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		err = fmt.Errorf("member %s is shorter than its header says: %w", e.name, io.ErrUnexpectedEOF)
	}
	return n, err
}

// unpackTar reads a tar stream once: it writes the first disk image it
// meets to j.dst and goes on reading headers, so that a second disk image
// (which one to boot?), a link or a name leaving the archive anywhere in
// it refuses the whole archive and removes what was written. An OVA (a
// tar whose first member is an .ovf) gives the disk its descriptor names.
func unpackTar(ctx context.Context, j unpackJob, r io.Reader) (d Digest, err error) {
	tr := tar.NewReader(r)
	kind := "tar"
	var (
		ova      *ovfDisk
		found    int // disk images met
		names    []string
		written  bool
		regulars int
	)
	defer func() {
		if err != nil && written {
			os.Remove(j.dst)
		}
	}()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Digest{}, fmt.Errorf("%s: %w", kind, err)
		}
		if err := checkTarMember(kind, h); err != nil {
			return Digest{}, err
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		regulars++
		if len(names) < maxListed {
			names = append(names, h.Name) // for the error, if there is one
		}
		if regulars == 1 && strings.EqualFold(path.Ext(h.Name), ".ovf") {
			kind = "ova"
			if ova, err = readOVF(tr, h); err != nil {
				return Digest{}, err
			}
			if ova.disks > 1 {
				j.log("the OVA lists several disks: only the first boots", "disk", ova.href, "disks", ova.disks)
			}
			continue
		}
		want := isDiskName(h.Name)
		if ova != nil {
			want = path.Clean(h.Name) == ova.href
		}
		if !want {
			continue
		}
		found++
		if found > 1 {
			if ova != nil {
				return Digest{}, &ArchiveError{Kind: kind, Problem: fmt.Sprintf("the disk %q is in it twice", ova.href)}
			}
			continue
		}
		if err := j.announced(h.Size); err != nil {
			return Digest{}, err
		}
		j.log("unpacking archive member", "archive", kind, "member", h.Name)
		var member io.Reader = tr
		if ova != nil && ova.gzip {
			z, err := gzip.NewReader(tr)
			if err != nil {
				return Digest{}, fmt.Errorf("ova member %s: %w", h.Name, err)
			}
			member = z
		}
		if d, err = writeImage(ctx, j, member); err != nil {
			return Digest{}, err
		}
		written = true
	}
	switch {
	case ova != nil && found == 0:
		return Digest{}, &ArchiveError{Kind: kind, Problem: fmt.Sprintf("the disk %q its .ovf names is not in it", ova.href), Members: names}
	case found == 1:
		return d, nil
	}
	_, err = pickDisk(kind, names)
	return Digest{}, err
}

func checkTarMember(kind string, h *tar.Header) error {
	mode := fs.FileMode(0)
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
	case tar.TypeDir:
		mode = fs.ModeDir
	case tar.TypeSymlink:
		mode = fs.ModeSymlink
	case tar.TypeLink:
		return &ArchiveError{Kind: kind, Problem: fmt.Sprintf("member %q is a hard link", h.Name)}
	default:
		mode = fs.ModeIrregular
	}
	return checkMember(kind, h.Name, mode)
}

// ovfDisk is the file an OVF descriptor names for its first disk.
type ovfDisk struct {
	href  string
	gzip  bool // ovf:compression="gzip"
	disks int  // how many disks it lists; only the first is booted
}

type ovfFile struct {
	ID          string `xml:"id,attr"`
	Href        string `xml:"href,attr"`
	Compression string `xml:"compression,attr"`
	ChunkSize   int64  `xml:"chunkSize,attr"`
}

// ovfEnvelope holds what an OVF descriptor (DMTF DSP0243) says of its
// disks; encoding/xml matches these names in any namespace.
type ovfEnvelope struct {
	Files []ovfFile `xml:"References>File"`
	Disks []struct {
		FileRef string `xml:"fileRef,attr"`
	} `xml:"DiskSection>Disk"`
}

// maxOVF bounds the descriptor read into memory.
const maxOVF = 1 << 20

func readOVF(r io.Reader, h *tar.Header) (*ovfDisk, error) {
	fail := func(format string, args ...any) error {
		return &ArchiveError{Kind: "ova", Problem: fmt.Sprintf("%s: ", h.Name) + fmt.Sprintf(format, args...)}
	}
	if h.Size > maxOVF {
		return nil, fail("the descriptor is over %d bytes", maxOVF)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxOVF))
	if err != nil {
		return nil, fmt.Errorf("ova: %s: %w", h.Name, err)
	}
	var env ovfEnvelope
	if err := xml.Unmarshal(b, &env); err != nil {
		return nil, fail("%v", err)
	}
	var ref string
	for _, d := range env.Disks {
		if d.FileRef != "" {
			ref = d.FileRef
			break
		}
	}
	if ref == "" {
		return nil, fail("it names no disk file")
	}
	i := slices.IndexFunc(env.Files, func(f ovfFile) bool { return f.ID == ref })
	if i < 0 {
		return nil, fail("its disk refers to file id %q, which References does not list", ref)
	}
	file := env.Files[i]
	switch {
	case file.Href == "" || !filepath.IsLocal(file.Href) || strings.Contains(file.Href, "://"):
		return nil, fail("the disk file %q is not a member name", file.Href)
	case file.ChunkSize != 0:
		return nil, fail("the disk %q is split into chunks; join them with tar and qemu-img first", file.Href)
	case file.Compression != "" && file.Compression != "identity" && file.Compression != "gzip":
		return nil, fail("the disk %q is compressed with %q (accepted: gzip)", file.Href, file.Compression)
	}
	return &ovfDisk{href: path.Clean(file.Href), gzip: file.Compression == "gzip", disks: len(env.Disks)}, nil
}
