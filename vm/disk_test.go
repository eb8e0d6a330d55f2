package vm

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// qcow2Header builds a qcow2 header as qemu-img writes it: the fixed v3
// header (104 bytes), an end-of-extensions marker, then the backing name.
func qcow2Header(version uint32, size uint64, backing string) []byte {
	h := make([]byte, 112, 112+len(backing))
	copy(h, "QFI\xfb")
	binary.BigEndian.PutUint32(h[4:], version)
	if backing != "" {
		binary.BigEndian.PutUint64(h[8:], 112)
		binary.BigEndian.PutUint32(h[16:], uint32(len(backing)))
	}
	binary.BigEndian.PutUint32(h[20:], 16) // cluster_bits
	binary.BigEndian.PutUint64(h[24:], size)
	binary.BigEndian.PutUint32(h[96:], 4)    // refcount_order
	binary.BigEndian.PutUint32(h[100:], 104) // header_length
	return append(h, backing...)
}

func TestParseQcow2Header(t *testing.T) {
	withBacking := qcow2Header(3, 20<<30, "/images/base.qcow2")
	tests := []struct {
		name string
		h    []byte
		img  Image
		ok   bool
		err  string
	}{
		{"v3 with backing", withBacking, Image{Format: "qcow2", VirtualSize: 20 << 30, Backing: "/images/base.qcow2"}, true, ""},
		{"v3 no backing", qcow2Header(3, 1<<30, ""), Image{Format: "qcow2", VirtualSize: 1 << 30}, true, ""},
		{"v2 no backing", qcow2Header(2, 512<<20, ""), Image{Format: "qcow2", VirtualSize: 512 << 20}, true, ""},
		{"v3 fixed fields only", qcow2Header(3, 1<<30, "")[:32], Image{Format: "qcow2", VirtualSize: 1 << 30}, true, ""},
		{"zero size", qcow2Header(3, 0, ""), Image{Format: "qcow2"}, true, ""},
		{"backing of 1023 bytes", qcow2Header(3, 1<<30, "/"+strings.Repeat("b", 1022)),
			Image{Format: "qcow2", VirtualSize: 1 << 30, Backing: "/" + strings.Repeat("b", 1022)}, true, ""},
		{"backing name cut off", withBacking[:len(withBacking)-1], Image{}, true, "outside the header"},
		{"backing offset past the end", withBacking[:100], Image{}, true, "outside the header"},
		{"backing of 1024 bytes", qcow2Header(3, 1<<30, "/"+strings.Repeat("b", 1023)), Image{}, true, "outside the header"},
		{"version 1", qcow2Header(1, 1<<30, ""), Image{}, true, "version 1"},
		{"version 4", qcow2Header(4, 1<<30, ""), Image{}, true, "version 4"},
		{"version 0", qcow2Header(0, 1<<30, ""), Image{}, true, "version 0"},
		{"size out of range", qcow2Header(3, 1<<61, ""), Image{}, true, "out of range"},
		{"size max uint64", qcow2Header(3, ^uint64(0), ""), Image{}, true, "out of range"},
		{"raw", []byte(strings.Repeat("\x00", 512)), Image{}, false, ""},
		{"empty", nil, Image{}, false, ""},
		{"mbr", append(make([]byte, 510), 0x55, 0xaa), Image{}, false, ""},
		{"vmdk", []byte("KDMV" + strings.Repeat("\x00", 100)), Image{}, false, ""},
		{"lower-case magic", append([]byte("qfi\xfb"), qcow2Header(3, 1, "")[4:]...), Image{}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, ok, err := ParseQcow2Header(tc.h)
			if ok != tc.ok {
				t.Errorf("ok = %v, want %v", ok, tc.ok)
			}
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("err = %v, want %q", err, tc.err)
			}
			if img != tc.img {
				t.Errorf("img = %+v, want %+v", img, tc.img)
			}
		})
	}
}

func FuzzParseQcow2Header(f *testing.F) {
	f.Add(qcow2Header(3, 20<<30, "/images/base.qcow2"))
	f.Add(qcow2Header(2, 1<<30, ""))
	f.Add(qcow2Header(3, 1<<30, "x")[:40])
	f.Add([]byte("QFI\xfb\x00\x00\x00\x03"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, h []byte) {
		img, ok, err := ParseQcow2Header(h)
		if !ok {
			if err != nil || img != (Image{}) {
				t.Fatalf("not qcow2 but %+v, %v", img, err)
			}
			return
		}
		if len(h) < 4 || string(h[:4]) != "QFI\xfb" {
			t.Fatalf("ok without the magic: %q", h)
		}
		if err != nil {
			if img != (Image{}) {
				t.Fatalf("error %v with image %+v", err, img)
			}
			return
		}
		if img.Format != "qcow2" || img.VirtualSize < 0 || img.VirtualSize > 1<<60 || len(img.Backing) > 1023 {
			t.Fatalf("bad image %+v", img)
		}
		if img.Backing != "" && !strings.Contains(string(h), img.Backing) {
			t.Fatalf("backing %q is not in the header", img.Backing)
		}
	})
}

func TestInspectImage(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	raw := write("disk.raw", make([]byte, 3*512))
	img, err := InspectImage(raw)
	if err != nil || img != (Image{Format: "raw", VirtualSize: 3 * 512}) {
		t.Errorf("raw: %+v, %v", img, err)
	}
	empty := write("empty.img", nil)
	img, err = InspectImage(empty)
	if err != nil || img != (Image{Format: "raw"}) {
		t.Errorf("empty: %+v, %v", img, err)
	}
	q := write("disk.qcow2", append(qcow2Header(3, 8<<30, "/base.img"), make([]byte, 8192)...))
	img, err = InspectImage(q)
	if err != nil || img != (Image{Format: "qcow2", VirtualSize: 8 << 30, Backing: "/base.img"}) {
		t.Errorf("qcow2: %+v, %v", img, err)
	}
	bad := write("bad.qcow2", qcow2Header(9, 1, ""))
	if img, err := InspectImage(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad version: %+v, %v; want an error naming the file", img, err)
	}
	if _, err := InspectImage(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}

// TestInspectImageQemuImg checks the parser against files qemu-img makes.
func TestInspectImageQemuImg(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("no qemu-img")
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	overlay := filepath.Join(dir, "overlay.qcow2")
	for _, args := range [][]string{
		{"create", "-q", "-f", "qcow2", base, "1G"},
		(DiskAction{Create: true, Size: 2 << 30, BackingFmt: "qcow2"}).QemuImgArgs(overlay, base),
	} {
		if out, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %q: %v\n%s", args, err, out)
		}
	}
	img, err := InspectImage(base)
	if err != nil || img != (Image{Format: "qcow2", VirtualSize: 1 << 30}) {
		t.Errorf("base: %+v, %v", img, err)
	}
	img, err = InspectImage(overlay)
	if err != nil || img != (Image{Format: "qcow2", VirtualSize: 2 << 30, Backing: base}) {
		t.Errorf("overlay: %+v, %v", img, err)
	}
	if out, err := exec.Command(qemuImg, (DiskAction{Resize: true, Size: 3 << 30}).QemuImgArgs(overlay, base)...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img resize: %v\n%s", err, out)
	}
	if img, err = InspectImage(overlay); err != nil || img.VirtualSize != 3<<30 {
		t.Errorf("resized overlay: %+v, %v", img, err)
	}
}

func TestPlanDisk(t *testing.T) {
	const G = 1 << 30
	qcowBase := &Image{Format: "qcow2", VirtualSize: 2 * G}
	rawBase := &Image{Format: "raw", VirtualSize: 3 * G}
	bigBase := &Image{Format: "qcow2", VirtualSize: 40 * G}
	tests := []struct {
		name     string
		base     *Image
		basePath string
		overlay  *Image
		want     int64
		action   DiskAction
		warn     string
		err      string
	}{
		{"create on qcow2 base", qcowBase, "/img/base.qcow2", nil, 20 * G,
			DiskAction{Create: true, Size: 20 * G, BackingFmt: "qcow2"}, "", ""},
		{"create on raw base", rawBase, "/img/base.raw", nil, 20 * G,
			DiskAction{Create: true, Size: 20 * G, BackingFmt: "raw"}, "", ""},
		{"create blank", nil, "", nil, 20 * G,
			DiskAction{Create: true, Size: 20 * G}, "", ""},
		{"base bigger than DISK_SIZE", bigBase, "/img/big.qcow2", nil, 20 * G,
			DiskAction{Create: true, Size: 40 * G, BackingFmt: "qcow2"}, "", ""},
		{"same size", qcowBase, "/img/base.qcow2", &Image{Format: "qcow2", VirtualSize: 20 * G, Backing: "/img/base.qcow2"}, 20 * G,
			DiskAction{Size: 20 * G}, "", ""},
		{"grow", qcowBase, "/img/base.qcow2", &Image{Format: "qcow2", VirtualSize: 20 * G, Backing: "/img/base.qcow2"}, 30 * G,
			DiskAction{Resize: true, Size: 30 * G}, "", ""},
		{"grow blank", nil, "", &Image{Format: "qcow2", VirtualSize: 20 * G}, 21 * G,
			DiskAction{Resize: true, Size: 21 * G}, "", ""},
		{"shrink refused", qcowBase, "/img/base.qcow2", &Image{Format: "qcow2", VirtualSize: 20 * G, Backing: "/img/base.qcow2"}, 10 * G,
			DiskAction{Size: 20 * G}, "DISK_SIZE is smaller than the disk (10G < 20G): disks grow, never shrink; keeping 20G", ""},
		{"shrink refused, odd sizes", nil, "", &Image{Format: "qcow2", VirtualSize: 1536 << 20}, 512 << 20,
			DiskAction{Size: 1536 << 20}, "(512M < 1536M)", ""},
		{"backing changed", qcowBase, "/img/other.qcow2", &Image{Format: "qcow2", VirtualSize: 20 * G, Backing: "/img/base.qcow2"}, 20 * G,
			DiskAction{}, "", `made on top of "/img/base.qcow2", but BOOT_FROM is now "/img/other.qcow2"`},
		{"blank disk, now a base", qcowBase, "/img/base.qcow2", &Image{Format: "qcow2", VirtualSize: 20 * G}, 20 * G,
			DiskAction{}, "", `made on top of "", but BOOT_FROM is now "/img/base.qcow2"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := PlanDisk(tc.base, tc.basePath, tc.overlay, tc.want, "DISK_SIZE")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("PlanDisk = %+v, %v; want error %q", a, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			warn := a.Warning
			a.Warning = ""
			if a != tc.action {
				t.Errorf("PlanDisk = %+v, want %+v", a, tc.action)
			}
			if (tc.warn == "") != (warn == "") || !strings.Contains(warn, tc.warn) {
				t.Errorf("warning %q, want %q", warn, tc.warn)
			}
		})
	}
}

func TestQemuImgArgs(t *testing.T) {
	tests := []struct {
		name     string
		a        DiskAction
		basePath string
		want     []string
	}{
		{"create on base", DiskAction{Create: true, Size: 21474836480, BackingFmt: "qcow2"}, "/img/base.qcow2",
			[]string{"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "/img/base.qcow2", "/data/vms/vm/disk.qcow2", "21474836480"}},
		{"create on raw", DiskAction{Create: true, Size: 1 << 30, BackingFmt: "raw"}, "/img/base,1.raw",
			[]string{"create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/img/base,1.raw", "/data/vms/vm/disk.qcow2", "1073741824"}},
		{"create blank", DiskAction{Create: true, Size: 1 << 30}, "",
			[]string{"create", "-q", "-f", "qcow2", "/data/vms/vm/disk.qcow2", "1073741824"}},
		{"resize", DiskAction{Resize: true, Size: 32 << 30}, "/img/base.qcow2",
			[]string{"resize", "-q", "/data/vms/vm/disk.qcow2", "34359738368"}},
		{"nothing", DiskAction{Size: 1 << 30}, "/img/base.qcow2", nil},
		{"shrink refused", DiskAction{Size: 1 << 30, Warning: "keeping"}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.QemuImgArgs("/data/vms/vm/disk.qcow2", tc.basePath); !slices.Equal(got, tc.want) {
				t.Errorf("QemuImgArgs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHuman(t *testing.T) {
	for in, want := range map[int64]string{
		20 << 30:   "20G",
		1 << 30:    "1G",
		1536 << 20: "1536M",
		512 << 20:  "512M",
		1 << 20:    "1M",
		1000:       "1000 bytes",
	} {
		if got := human(in); got != want {
			t.Errorf("human(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestReviewedDiskEdges(t *testing.T) {
	if _, ok, err := ParseQcow2Header([]byte("QFI\xfb\x00\x00\x00\x03\x00")); !ok || err == nil {
		t.Errorf("truncated qcow2 header: ok=%v err=%v; want ok and an error", ok, err)
	}
	if _, err := PlanDisk(nil, "", &Image{Format: "qcow2", Backing: "/img/base.qcow2", VirtualSize: 20 << 30}, 20<<30, "DISK_SIZE"); err == nil {
		t.Error("switching BOOT_FROM from an image to blank kept the old disk")
	}
}
