package image

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

// fixtureDisk is disk.raw of testdata/archives (see make.sh there).
func fixtureDisk() []byte {
	line := []byte("vmrunner 7z fixture\n")
	b := bytes.Repeat(line, 65536/len(line)+1)[:65536]
	return append(b, make([]byte, 256<<10)...)
}

func fixture(t testing.TB, name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", "archives", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// member is one entry of an archive a test builds.
type member struct {
	name string
	data []byte
	typ  byte   // tar.TypeReg (default), TypeDir, TypeSymlink, TypeLink, TypeChar
	link string // of a symlink or hard link
	size int64  // the size a zip member's header states, when it lies (0: the truth)
}

func tarBytes(t testing.TB, members ...member) []byte {
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, m := range members {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: m.name, Typeflag: typ, Linkname: m.link, Mode: 0o644, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(m.data))
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zipBytes(t testing.TB, members ...member) []byte {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, m := range members {
		h := &zip.FileHeader{Name: m.name, Method: zip.Deflate}
		switch m.typ {
		case tar.TypeSymlink:
			h.SetMode(fs.ModeSymlink | 0o777)
			m.data = []byte(m.link)
		case tar.TypeDir:
			h.SetMode(fs.ModeDir | 0o755)
		}
		if m.size == 0 {
			f, err := w.CreateHeader(h)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(m.data); err != nil {
				t.Fatal(err)
			}
			continue
		}
		// A member whose header states m.size bytes but holds m.data.
		var packed bytes.Buffer
		fw, _ := flate.NewWriter(&packed, flate.BestCompression)
		fw.Write(m.data)
		fw.Close()
		h.CRC32 = crc32.ChecksumIEEE(m.data)
		h.CompressedSize64, h.UncompressedSize64 = uint64(packed.Len()), uint64(m.size)
		f, err := w.CreateRaw(h)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(packed.Bytes())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ovf is a minimal OVF descriptor naming href as its one disk.
func ovf(href, compression string) []byte {
	attr := ""
	if compression != "" {
		attr = ` ovf:compression="` + compression + `"`
	}
	return []byte(`<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:id="file1" ovf:href="` + href + `"` + attr + `/></References>
  <DiskSection><Info>disks</Info><Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="1"/></DiskSection>
</Envelope>`)
}

// unpackLocal runs Unpacked on data as a file named name under
// root/src, with the cache at root/a/b/cache, so that a member escaping
// by ../../ would land in root.
func unpackLocal(t *testing.T, name string, data []byte, limit int64) (string, string, error) {
	root := t.TempDir()
	src := filepath.Join(root, "src", name)
	cache := filepath.Join(root, "a", "b", "cache")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Unpacked(context.Background(), src, cache, limit, nil)
	return root, p, err
}

// assertNothingWritten checks that the only files under root are the
// source and, in the cache, lock files: nothing escaped, nothing was left
// half written.
func assertNothingWritten(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if !strings.HasPrefix(rel, "src"+string(filepath.Separator)) && !strings.HasSuffix(rel, ".lock") {
			t.Errorf("file left behind: %s", rel)
		}
		return nil
	})
}

func gzipTar(t *testing.T, members ...member) []byte { return compressGzip(t, tarBytes(t, members...)) }

func TestUnpackArchives(t *testing.T) {
	disk := fixtureDisk()
	readme := member{name: "README.txt", data: []byte("hello\n")}
	tests := []struct {
		name string
		data []byte
	}{
		{"disk.raw.bz2", fixture(t, "disk.raw.bz2")},
		{"disk.7z", fixture(t, "disk.7z")},
		{"disk.zip", zipBytes(t, readme, member{name: "dir/", typ: tar.TypeDir}, member{name: "dir/disk.raw", data: disk})},
		{"disk.tar", tarBytes(t, member{name: "disk/", typ: tar.TypeDir}, member{name: "disk/disk.raw", data: disk}, readme)},
		{"disk.tar.gz", gzipTar(t, readme, member{name: "disk.raw", data: disk})},
		{"disk.tgz", gzipTar(t, member{name: "disk.img", data: disk})},
		{"disk.tar.xz", compressXZ(t, tarBytes(t, member{name: "disk.qcow2", data: disk}))},
		{"disk.tar.zst", compressZstd(t, tarBytes(t, member{name: "disk.raw", data: disk}))},
		{"appliance.ova", tarBytes(t, member{name: "appliance.ovf", data: ovf("appliance-disk1.vmdk", "")},
			member{name: "appliance.mf", data: []byte("SHA256(appliance.ovf)= 00\n")},
			member{name: "appliance-disk1.vmdk", data: disk})},
		{"gzipped-disk.ova", tarBytes(t, member{name: "x.ovf", data: ovf("x-disk1.vmdk.gz", "gzip")},
			member{name: "x-disk1.vmdk.gz", data: compressGzip(t, disk)})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, p, err := unpackLocal(t, tt.name, tt.data, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			assertFile(t, p, disk)
			if !strings.HasPrefix(p, filepath.Join(root, "a", "b", "cache")+string(filepath.Separator)) {
				t.Errorf("unpacked to %s, outside the cache", p)
			}
			// Unpacked once: the second call finds the copy.
			again, err := Unpacked(context.Background(), filepath.Join(root, "src", tt.name), filepath.Dir(p), 1<<20, nil)
			if err != nil || again != p {
				t.Errorf("second call: %s, %v; want %s", again, err, p)
			}
		})
	}
}

// TestUnpackedPlainFileIsItself: an image that is not packed is used
// where it is, with nothing written.
func TestUnpackedPlainFileIsItself(t *testing.T) {
	root, p, err := unpackLocal(t, "disk.raw", fixtureDisk(), 0)
	if err != nil || p != filepath.Join(root, "src", "disk.raw") {
		t.Fatalf("Unpacked = %s, %v", p, err)
	}
	assertNothingWritten(t, root)
}

func TestFetchUnpacksArchives(t *testing.T) {
	disk := fixtureDisk()
	files := map[string][]byte{
		"/disk.7z":       fixture(t, "disk.7z"),
		"/disk.zip":      zipBytes(t, member{name: "disk.img", data: disk}),
		"/disk.tar.xz":   compressXZ(t, tarBytes(t, member{name: "disk.raw", data: disk})),
		"/appliance.ova": tarBytes(t, member{name: "a.ovf", data: ovf("a-disk1.vmdk", "")}, member{name: "a-disk1.vmdk", data: disk}),
		"/disk.raw.bz2":  fixture(t, "disk.raw.bz2"),
	}
	s := newFileServer(t, files)
	for name, data := range files {
		t.Run(name[1:], func(t *testing.T) {
			dir := t.TempDir()
			req := quick(s.URL+name, dir)
			req.SHA256 = sha256Hex(data)
			p := mustFetch(t, req)
			assertFile(t, p, disk)
			if files := cacheFiles(t, dir); len(files) != 2 {
				t.Errorf("cache holds %v, want the image and its record", files)
			}
		})
	}
}

// sevenZipWithName renames disk.raw in the plain-header fixture to name
// (8 characters, as the header has room for) and fixes the header CRCs.
func sevenZipWithName(t testing.TB, name string) []byte {
	b := fixture(t, "disk-plain-header.7z")
	old, repl := utf16le("disk.raw"), utf16le(name)
	i := bytes.Index(b, old)
	if i < 0 || len(repl) != len(old) {
		t.Fatalf("cannot rename %q to %q", "disk.raw", name)
	}
	copy(b[i:], repl)
	le := binary.LittleEndian
	off, size := le.Uint64(b[12:]), le.Uint64(b[20:])
	le.PutUint32(b[28:], crc32.ChecksumIEEE(b[32+off:32+off+size]))
	le.PutUint32(b[8:], crc32.ChecksumIEEE(b[12:32]))
	return b
}

func utf16le(s string) []byte {
	var b []byte
	for _, r := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, r)
	}
	return b
}

// TestUnpackRefusesHostileArchives tries what a hostile archive would: a
// member named to land outside the cache, links to host files, a second
// disk to confuse the choice, sizes over the cap or lying about it. Each
// is refused, and nothing is written anywhere, inside the cache or out.
func TestUnpackRefusesHostileArchives(t *testing.T) {
	disk := fixtureDisk()
	zeros := make([]byte, 8<<20)
	tests := []struct {
		name, file string
		data       []byte
		want       string // in the error
		kind       string // "archive": an *ArchiveError; "limit": a *LimitError; "": any error
	}{
		{"tar ../ member", "x.tar", tarBytes(t, member{name: "../../x.img", data: disk}), `member "../../x.img" points outside the archive`, "archive"},
		{"tar absolute member", "x.tar", tarBytes(t, member{name: "/etc/cron.d/x.img", data: disk}), "points outside", "archive"},
		{"tar.gz ../ member after the disk", "x.tgz", gzipTar(t, member{name: "disk.img", data: disk}, member{name: "../x.raw", data: disk}), "points outside", "archive"},
		{"tar symlink member", "x.tar", tarBytes(t, member{name: "disk.img", typ: tar.TypeSymlink, link: "/etc/shadow"}), "is a symbolic link", "archive"},
		{"tar hard link member", "x.tar", tarBytes(t, member{name: "disk.raw", data: disk}, member{name: "b.img", typ: tar.TypeLink, link: "/etc/shadow"}), "is a hard link", "archive"},
		{"tar device member", "x.tar", tarBytes(t, member{name: "disk.img", typ: tar.TypeChar}), "not a regular file", "archive"},
		{"tar two disks", "x.tar", tarBytes(t, member{name: "a.img", data: disk}, member{name: "b.qcow2", data: disk}), "several disk images", "archive"},
		{"tar no disk", "x.tar", tarBytes(t, member{name: "notes.txt", data: disk}), "no disk image", "archive"},
		{"zip ../ member", "x.zip", zipBytes(t, member{name: "../../x.img", data: disk}), "points outside", "archive"},
		{"zip backslash member", "x.zip", zipBytes(t, member{name: `..\..\x.img`, data: disk}), "points outside", "archive"},
		{"zip symlink member", "x.zip", zipBytes(t, member{name: "disk.img", typ: tar.TypeSymlink, link: "/etc/shadow"}), "is a symbolic link", "archive"},
		{"zip two disks", "x.zip", zipBytes(t, member{name: "a.img", data: disk}, member{name: "b.vmdk", data: disk}), "a.img, b.vmdk", "archive"},
		{"7z ../ member", "x.7z", sevenZipWithName(t, "../x.raw"), "points outside", "archive"},
		{"7z symlink member", "x.7z", fixture(t, "symlink.7z"), "is a symbolic link", "archive"},
		{"7z two disks", "x.7z", fixture(t, "two.7z"), "several disk images", "archive"},
		{"ova disk href leaving the archive", "x.ova", tarBytes(t, member{name: "x.ovf", data: ovf("../../x.vmdk", "")}, member{name: "x.vmdk", data: disk}), "is not a member name", "archive"},
		{"ova disk missing", "x.ova", tarBytes(t, member{name: "x.ovf", data: ovf("x-disk1.vmdk", "")}, member{name: "other.vmdk", data: disk}), "is not in it", "archive"},
		{"ova disk compressed otherwise", "x.ova", tarBytes(t, member{name: "x.ovf", data: ovf("x.vmdk", "bzip2")}, member{name: "x.vmdk", data: disk}), "accepted: gzip", "archive"},
		// 8 MiB of zeros deflate to ~8 KiB (1000:1); the zip says so and
		// is refused before a byte is written.
		{"zip bomb over the cap", "x.zip", zipBytes(t, member{name: "disk.img", data: zeros}), "EXTRACT_MAX_SIZE=1048576", "limit"},
		// It says 4 KiB, holds 8 MiB: archive/zip stops it at 4 KiB (and
		// the cap counts written bytes anyway).
		{"zip member lying about its size", "x.zip", zipBytes(t, member{name: "disk.img", data: zeros, size: 4096}), "not a valid zip file", ""},
		{"tar.gz over the cap", "x.tgz", gzipTar(t, member{name: "disk.img", data: zeros}), "EXTRACT_MAX_SIZE=1048576", "limit"},
		{"7z over the cap", "x.7z", fixture(t, "disk.7z"), "EXTRACT_MAX_SIZE=4096", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := int64(1 << 20)
			if strings.Contains(tt.want, "=4096") {
				limit = 4096
			}
			root, p, err := unpackLocal(t, tt.file, tt.data, limit)
			if err == nil {
				t.Fatalf("unpacked to %s, want an error saying %q", p, tt.want)
			}
			ok := map[string]bool{"archive": errors.As(err, new(*ArchiveError)), "limit": errors.As(err, new(*LimitError)), "": true}[tt.kind]
			if !ok || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want a %s error saying %q", err, tt.kind, tt.want)
			}
			assertNothingWritten(t, root)
		})
	}
}

func TestArchiveErrorListsMembers(t *testing.T) {
	var names []string
	for i := range 30 {
		names = append(names, strings.Repeat("x", i%3+1)+".txt")
	}
	_, err := pickDisk("zip", names)
	if err == nil || !strings.Contains(err.Error(), "… 10 more") || !slices.Contains(err.(*ArchiveError).Members, "xxx.txt") {
		t.Errorf("pickDisk = %v", err)
	}
}

// FuzzUnpack feeds any bytes to the unpacker as a local BOOT_FROM: it
// must not panic, and it writes nothing but its one image in the cache.
func FuzzUnpack(f *testing.F) {
	disk := fixtureDisk()[:70000]
	small := member{name: "disk.raw", data: disk}
	for _, seed := range [][]byte{
		fixture(f, "disk.7z"), fixture(f, "symlink.7z"), fixture(f, "disk.raw.bz2"),
		zipBytes(f, small), tarBytes(f, small),
		tarBytes(f, member{name: "a.ovf", data: ovf("a.vmdk", "gzip")}, member{name: "a.vmdk", data: disk}),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		src := filepath.Join(root, "in")
		cache := filepath.Join(root, "cache")
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(cache, 0o755); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(cache, "out")
		_, err := unpackFile(context.Background(), unpackJob{src: src, dst: dst, limit: 1 << 20, what: "fuzz"})
		entries, _ := os.ReadDir(cache)
		switch {
		case err == nil && (len(entries) != 1 || entries[0].Name() != "out"):
			t.Errorf("cache holds %v, want only out", entries)
		case err != nil && len(entries) != 0:
			t.Errorf("failed (%v) but the cache holds %v", err, entries)
		}
		if top, _ := os.ReadDir(root); len(top) != 2 {
			t.Errorf("%s holds %v, want in and cache", root, top)
		}
	})
}

// TestOVAStreamOptimizedDisk takes the disk out of an OVA as VirtualBox
// and VMware make them (a streamOptimized vmdk whose embedded descriptor
// names its member), finds it self-contained, and converts it with
// qemu-img to the same content.
func TestOVAStreamOptimizedDisk(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (scripts/test-deps.sh installs it)")
	}
	dir := t.TempDir()
	raw, vmdk := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "appliance-disk1.vmdk")
	if err := os.WriteFile(raw, append(fixtureDisk(), make([]byte, 8<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "convert", "-q", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	disk, err := os.ReadFile(vmdk)
	if err != nil {
		t.Fatal(err)
	}
	ova := tarBytes(t, member{name: "appliance.ovf", data: ovf("appliance-disk1.vmdk", "")}, member{name: "appliance-disk1.vmdk", data: disk})
	_, p, err := unpackLocal(t, "appliance.ova", ova, 0)
	if err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(p)
	if err != nil || info.Format != FormatVMDK {
		t.Fatalf("Inspect = %+v, %v", info, err)
	}
	if err := info.SelfContained(p); err != nil {
		t.Fatalf("the OVA's disk is refused: %v", err)
	}
	qcow2 := filepath.Join(dir, "converted.qcow2")
	run := func(args []string) error {
		out, err := exec.Command("qemu-img", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := Convert(context.Background(), info.Format, p, qcow2, run); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "compare", "-q", raw, qcow2).CombinedOutput(); err != nil {
		t.Errorf("the converted disk differs from the original: %v: %s", err, out)
	}
}
