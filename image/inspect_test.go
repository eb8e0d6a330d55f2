package image

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// qcow2Bytes lays out one 64 KiB cluster holding a qcow2 header, its
// extensions and a backing file name, as QEMU writes them.
func qcow2Bytes(version uint32, backing, backingFmt, dataFile string, incompat uint64) []byte {
	b := make([]byte, 1<<16)
	be := binary.BigEndian
	copy(b, "QFI\xfb")
	be.PutUint32(b[4:], version)
	be.PutUint32(b[20:], 16)
	be.PutUint64(b[24:], 1<<30)
	off := 72
	if version == 3 {
		be.PutUint64(b[72:], incompat)
		be.PutUint32(b[96:], 4)
		be.PutUint32(b[100:], 104)
		off = 104
	}
	ext := func(typ uint32, data string) {
		be.PutUint32(b[off:], typ)
		be.PutUint32(b[off+4:], uint32(len(data)))
		copy(b[off+8:], data)
		off += 8 + (len(data)+7)&^7
	}
	if backingFmt != "" {
		ext(qcow2ExtBackingFormat, backingFmt)
	}
	if dataFile != "" {
		ext(qcow2ExtDataFile, dataFile)
	}
	off += 8 // the end marker: zeros
	if backing != "" {
		be.PutUint64(b[8:], uint64(off))
		be.PutUint32(b[16:], uint32(len(backing)))
		copy(b[off:], backing)
	}
	return b
}

// kdmvBytes is a vmdk sparse header with capacity sectors and an embedded
// descriptor at sector 1.
func kdmvBytes(capacity uint64, desc string) []byte {
	b := make([]byte, 4096)
	le := binary.LittleEndian
	copy(b, "KDMV")
	le.PutUint32(b[4:], 1)
	le.PutUint64(b[vmdkCapacityAt:], capacity)
	le.PutUint64(b[vmdkDescOffsetAt:], 1)
	le.PutUint64(b[vmdkDescSizeAt:], 2)
	copy(b[512:], desc)
	return b
}

func vpcBytes(diskType uint32, parent string) []byte {
	b := make([]byte, 2048)
	be := binary.BigEndian
	copy(b, "conectix")
	be.PutUint64(b[16:], 512)
	be.PutUint64(b[vpcCurrentSizeAt:], 64<<20)
	be.PutUint32(b[vpcDiskTypeAt:], diskType)
	copy(b[512:], "cxsparse")
	for i, c := range parent {
		be.PutUint16(b[512+vpcParentNameAt+2*i:], uint16(c))
	}
	return b
}

func vdiBytes(typ uint32, parent byte) []byte {
	b := make([]byte, 512)
	le := binary.LittleEndian
	copy(b, "<<< Oracle VM VirtualBox Disk Image >>>\n")
	le.PutUint32(b[0x40:], 0xbeda107f)
	le.PutUint32(b[vdiVersionAt:], vdiVersion11)
	le.PutUint32(b[vdiTypeAt:], typ)
	le.PutUint64(b[vdiSizeAt:], 32<<20)
	b[vdiParentAt] = parent
	return b
}

func TestInspect(t *testing.T) {
	iso := make([]byte, 0x9000)
	copy(iso[0x8001:], "CD001")
	tests := []struct {
		name   string
		data   []byte
		pinned Format
		want   Info
		err    string
	}{
		{name: "qcow2 alone", data: qcow2Bytes(3, "", "", "", 0),
			want: Info{Format: FormatQcow2, VirtualSize: 1 << 30}},
		{name: "qcow2 v2 backing", data: qcow2Bytes(2, "/etc/shadow", "", "", 0),
			want: Info{Format: FormatQcow2, VirtualSize: 1 << 30, Backing: "/etc/shadow",
				Refs: []Ref{{"backing file", "/etc/shadow"}}}},
		{name: "qcow2 v3 backing with format", data: qcow2Bytes(3, "nbd://127.0.0.1:10809", "raw", "", 0),
			want: Info{Format: FormatQcow2, VirtualSize: 1 << 30, Backing: "nbd://127.0.0.1:10809", BackingFormat: "raw",
				Refs: []Ref{{"backing file", "nbd://127.0.0.1:10809"}}}},
		{name: "qcow2 data file", data: qcow2Bytes(3, "", "", "/dev/sda", qcow2IncompatDataFile),
			want: Info{Format: FormatQcow2, VirtualSize: 1 << 30, Refs: []Ref{{"external data file", "/dev/sda"}}}},
		{name: "qcow2 data file bit without a name", data: qcow2Bytes(3, "", "", "", qcow2IncompatDataFile),
			want: Info{Format: FormatQcow2, VirtualSize: 1 << 30, Refs: []Ref{{"external data file", ""}}}},
		{name: "qcow2 data file name without the bit", data: qcow2Bytes(3, "", "", "x.raw", 0),
			want: Info{Format: FormatQcow2, VirtualSize: 1 << 30, Refs: []Ref{{"external data file", "x.raw"}}}},
		{name: "qcow2 pinned as raw is not parsed", data: qcow2Bytes(3, "/etc/shadow", "", "", 0), pinned: FormatRaw,
			want: Info{Format: FormatRaw, VirtualSize: 1 << 16}},
		{name: "qcow2 pinned as vmdk", data: qcow2Bytes(3, "", "", "", 0), pinned: FormatVMDK,
			err: "the header says qcow2, not vmdk"},
		{name: "qcow2 v1", data: qcow2Bytes(1, "", "", "", 0), err: "version 1"},
		{name: "qcow2 truncated", data: []byte("QFI\xfb\x00\x00\x00\x03"), err: "truncated"},
		{name: "vmdk monolithic sparse names itself", data: kdmvBytes(2048, "version=1\nRW 2048 SPARSE \"img.vmdk\"\n"),
			want: Info{Format: FormatVMDK, VirtualSize: 1 << 20}},
		{name: "vmdk sparse from an OVA names its member", data: kdmvBytes(2048, "version=1\nRW 2048 SPARSE \"appliance-disk1.vmdk\"\n"),
			want: Info{Format: FormatVMDK, VirtualSize: 1 << 20}},
		{name: "vmdk sparse naming another file", data: kdmvBytes(0, "version=1\nRW 2048 FLAT \"/etc/shadow\" 0\nRW 8 ZERO\n"),
			want: Info{Format: FormatVMDK, VirtualSize: 2056 * 512, Refs: []Ref{{"extent", "/etc/shadow"}}}},
		{name: "vmdk descriptor", data: []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\n" +
			"RW 4096 FLAT \"my disk-flat.vmdk\" 0\nRDONLY 2048 SPARSE \"../other.vmdk\"\n" +
			"parentFileNameHint=\"parent.vmdk\"\n"),
			want: Info{Format: FormatVMDK, VirtualSize: 6144 * 512, Backing: "parent.vmdk", BackingFormat: "vmdk", Refs: []Ref{
				{"extent", "my disk-flat.vmdk"}, {"extent", "../other.vmdk"}, {"parent", "parent.vmdk"}}}},
		{name: "vmdk sparse with a parent hidden in its text", data: kdmvBytes(2048, "ddb.comment = \"x parentFileNameHint=\"/etc/shadow\"\n"),
			want: Info{Format: FormatVMDK, VirtualSize: 1 << 20, Backing: "/etc/shadow", BackingFormat: "vmdk",
				Refs: []Ref{{"parent", "/etc/shadow"}}}},
		{name: "vmdk empty parent", data: kdmvBytes(2048, "parentFileNameHint=\"\"\n"),
			want: Info{Format: FormatVMDK, VirtualSize: 1 << 20}},
		{name: "vhd fixed", data: vpcBytes(2, ""), want: Info{Format: FormatVPC, VirtualSize: 64 << 20}},
		{name: "vhd differencing", data: vpcBytes(vpcDifferencing, "C:\\base.vhd"),
			want: Info{Format: FormatVPC, VirtualSize: 64 << 20, Refs: []Ref{{"parent (differencing disk)", "C:\\base.vhd"}}}},
		{name: "vdi", data: vdiBytes(1, 0), want: Info{Format: FormatVDI, VirtualSize: 32 << 20}},
		{name: "vdi differencing", data: vdiBytes(vdiTypeDiff, 1),
			want: Info{Format: FormatVDI, VirtualSize: 32 << 20, Refs: []Ref{{"parent (differencing disk)", ""}}}},
		{name: "iso", data: iso, want: Info{Format: FormatISO, VirtualSize: 0x9000}},
		{name: "raw", data: make([]byte, 3000), want: Info{Format: FormatRaw, VirtualSize: 3000}},
		{name: "empty", data: nil, want: Info{Format: FormatRaw}},
		{name: "xz", data: []byte{0xfd, '7', 'z', 'X', 'Z', 0}, err: "xz-compressed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := inspect(bytes.NewReader(tt.data), int64(len(tt.data)), "img.vmdk", tt.pinned)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Format != tt.want.Format || got.VirtualSize != tt.want.VirtualSize || got.Backing != tt.want.Backing ||
				got.BackingFormat != tt.want.BackingFormat || !slices.Equal(got.Refs, tt.want.Refs) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRefError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "evil.qcow2")
	if err := os.WriteFile(p, qcow2Bytes(3, "/etc/shadow", "raw", "", 0), 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(p)
	if err != nil {
		t.Fatal(err)
	}
	err = info.SelfContained(p)
	var re *RefError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), `backing file "/etc/shadow"`) || !strings.Contains(err.Error(), p) {
		t.Errorf("SelfContained = %v", err)
	}
	if err := (Info{Format: FormatRaw}).SelfContained(p); err != nil {
		t.Errorf("raw: %v", err)
	}
}

// qemuImgInfo is the part of `qemu-img info --output=json` compared.
type qemuImgInfo struct {
	Format         string `json:"format"`
	VirtualSize    int64  `json:"virtual-size"`
	Backing        string `json:"backing-filename"`
	BackingFormat  string `json:"backing-filename-format"`
	FormatSpecific struct {
		Data struct {
			DataFile string `json:"data-file"`
			Extents  []struct {
				Filename string `json:"filename"`
			} `json:"extents"`
		} `json:"data"`
	} `json:"format-specific"`
}

// TestInspectMatchesQemuImg checks Inspect against QEMU's own reading of
// images qemu-img made (and a crafted vmdk), reference by reference.
func TestInspectMatchesQemuImg(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (scripts/test-deps.sh installs it)")
	}
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	qemuImg := func(t *testing.T, args ...string) {
		t.Helper()
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %q: %v: %s", args, err, out)
		}
	}
	qemuImg(t, "create", "-q", "-f", "raw", p("data.raw"), "64M")
	if err := os.WriteFile(p("crafted.vmdk"), kdmvBytes(0, `version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"
RW 131072 FLAT "`+p("data.raw")+`" 0
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("desc.vmdk"), []byte(`version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"
RW 131072 FLAT "data.raw" 0
`), 0o644); err != nil {
		t.Fatal(err)
	}
	images := []struct {
		name   string
		create []string // qemu-img create options before the file and size
	}{
		{"plain.qcow2", []string{"-f", "qcow2"}},
		{"v2.qcow2", []string{"-f", "qcow2", "-o", "compat=0.10", "-u", "-F", "raw", "-b", "/etc/shadow"}},
		{"backing.qcow2", []string{"-f", "qcow2", "-u", "-F", "qcow2", "-b", "nbd://127.0.0.1:1/x"}},
		{"http.qcow2", []string{"-f", "qcow2", "-u", "-F", "raw", "-b", "http://127.0.0.1:1/x.img"}},
		{"datafile.qcow2", []string{"-f", "qcow2", "-o", "data_file=" + p("data.raw")}},
		{"sparse.vmdk", []string{"-f", "vmdk"}},
		{"child.vmdk", []string{"-f", "vmdk", "-F", "vmdk", "-b", p("sparse.vmdk")}},
		{"split.vmdk", []string{"-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"}},
		{"flat.vmdk", []string{"-f", "vmdk", "-o", "subformat=monolithicFlat"}},
		{"disk.vhdx", []string{"-f", "vhdx"}},
		{"disk.vhd", []string{"-f", "vpc"}},
		{"fixed.vhd", []string{"-f", "vpc", "-o", "subformat=fixed"}},
		{"disk.vdi", []string{"-f", "vdi"}},
		{"disk.raw", []string{"-f", "raw"}},
		{"crafted.vmdk", nil},
		{"desc.vmdk", nil},
	}
	for _, img := range images {
		t.Run(img.name, func(t *testing.T) {
			if img.create != nil {
				qemuImg(t, append(append([]string{"create", "-q"}, img.create...), p(img.name), "64M")...)
			}
			out, err := exec.Command("qemu-img", "info", "--output=json", p(img.name)).Output()
			if err != nil {
				t.Fatalf("qemu-img info: %v", err)
			}
			var q qemuImgInfo
			if err := json.Unmarshal(out, &q); err != nil {
				t.Fatal(err)
			}
			var qrefs []string
			if q.Backing != "" {
				qrefs = append(qrefs, strings.TrimPrefix(q.Backing, dir+"/"))
			}
			if d := q.FormatSpecific.Data.DataFile; d != "" {
				qrefs = append(qrefs, strings.TrimPrefix(d, dir+"/"))
			}
			for _, e := range q.FormatSpecific.Data.Extents {
				if e.Filename != p(img.name) {
					qrefs = append(qrefs, strings.TrimPrefix(e.Filename, dir+"/"))
				}
			}
			got, err := Inspect(p(img.name))
			if err != nil {
				t.Fatal(err)
			}
			var refs []string
			for _, r := range got.Refs {
				refs = append(refs, strings.TrimPrefix(r.Name, dir+"/"))
			}
			if string(got.Format) != q.Format || got.VirtualSize != q.VirtualSize ||
				got.Backing != q.Backing || got.BackingFormat != q.BackingFormat || !slices.Equal(refs, qrefs) {
				t.Errorf("Inspect: %s %d backing %q (%q) refs %q\nqemu-img: %s %d backing %q (%q) refs %q",
					got.Format, got.VirtualSize, got.Backing, got.BackingFormat, refs,
					q.Format, q.VirtualSize, q.Backing, q.BackingFormat, qrefs)
			}
		})
	}
}

func FuzzInspect(f *testing.F) {
	f.Add(qcow2Bytes(3, "/etc/shadow", "raw", "data", qcow2IncompatDataFile)[:512])
	f.Add(qcow2Bytes(2, "nbd://127.0.0.1:1", "", "", 0)[:512])
	f.Add(kdmvBytes(0, "version=1\nRW 8 FLAT \"/x\" 0\n")[:1024])
	f.Add([]byte("# Disk DescriptorFile\nversion=1\nRW 8 SPARSE \"a b.vmdk\"\nparentFileNameHint=\"p\"\n"))
	f.Add(vpcBytes(vpcDifferencing, "p.vhd"))
	f.Add(vdiBytes(vdiTypeDiff, 1))
	f.Add([]byte("vhdxfile"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := inspect(bytes.NewReader(b), int64(len(b)), "img", "")
		if err != nil {
			return
		}
		if info.VirtualSize < 0 {
			t.Fatalf("negative size %d", info.VirtualSize)
		}
		if info.Backing != "" && !slices.ContainsFunc(info.Refs, func(r Ref) bool { return r.Name == info.Backing }) {
			t.Fatalf("backing file %q not among the references %v", info.Backing, info.Refs)
		}
		if raw, err := inspect(bytes.NewReader(b), int64(len(b)), "img", FormatRaw); err != nil || len(raw.Refs) != 0 {
			t.Fatalf("pinned raw: %+v, %v", raw, err)
		}
	})
}

// BenchmarkInspect measures what a start pays to inspect its base image.
func BenchmarkInspect(b *testing.B) {
	p := filepath.Join(b.TempDir(), "base.qcow2")
	if err := os.WriteFile(p, qcow2Bytes(3, "", "", "", 0), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Inspect(p); err != nil {
			b.Fatal(err)
		}
	}
}
