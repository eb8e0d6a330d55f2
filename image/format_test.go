package image

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func header(at int, magic []byte, size int) []byte {
	b := make([]byte, size)
	copy(b[at:], magic)
	return b
}

func TestDetect(t *testing.T) {
	vdi := make([]byte, 512)
	copy(vdi, "<<< Oracle VM VirtualBox Disk Image >>>\n")
	binary.LittleEndian.PutUint32(vdi[0x40:], 0xbeda107f)
	tests := []struct {
		name string
		data []byte
		want Format
	}{
		{"qcow2", header(0, []byte("QFI\xfb\x00\x00\x00\x03"), 512), FormatQcow2},
		{"vmdk sparse", header(0, []byte("KDMV"), 512), FormatVMDK},
		{"vmdk ESX sparse", header(0, []byte("COWD"), 512), FormatVMDK},
		{"vmdk descriptor", []byte("# Disk DescriptorFile\nversion=1\nRW 41943040 FLAT \"disk-flat.vmdk\" 0\n"), FormatVMDK},
		{"vmdk descriptor without its comment", []byte("\n  version=2\nRW 8 FLAT \"/etc/shadow\" 0\n"), FormatVMDK},
		{"text that is no descriptor", []byte("# notes\nhello\nversion=1\n"), FormatRaw},
		{"vhdx", header(0, []byte("vhdxfile"), 1<<16), FormatVHDX},
		{"vhd dynamic", header(0, []byte("conectix"), 1024), FormatVPC},
		{"vdi", vdi, FormatVDI},
		{"iso", header(0x8001, []byte("CD001"), 0x9000), FormatISO},
		{"iso cut short", header(0x8001, []byte("CD0"), 0x8004), FormatRaw},
		{"raw MBR", header(510, []byte{0x55, 0xaa}, 1<<20), FormatRaw},
		{"empty", nil, FormatRaw},
		{"tiny", []byte("Q"), FormatRaw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := detect(tt.data); got != tt.want {
				t.Errorf("detect = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestInspectRefusesCompressed(t *testing.T) {
	dir := t.TempDir()
	packed := map[string][]byte{
		"bzip2": append([]byte("BZh9"), bzip2Block...),
		"zip":   zipMagic,
		"7z":    sevenZipMagic,
		"tar":   header(257, []byte("ustar"), 512),
	}
	for _, c := range compressions {
		if packed[c.name] == nil {
			packed[c.name] = c.magic
		}
	}
	for name, magic := range packed {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, header(0, magic, 1024), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Inspect(p); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v, want one naming the packing", name, err)
		}
	}
	// "BZh" alone is no bzip2 stream: a raw disk may start so.
	if got := compressionOf([]byte("BZh9 not a block")); got != "" {
		t.Errorf("compressionOf(BZh…) = %q", got)
	}
	if _, err := Inspect(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestNeedsConversion(t *testing.T) {
	for f, want := range map[Format]bool{FormatRaw: false, FormatQcow2: false, FormatISO: false,
		FormatVMDK: true, FormatVHDX: true, FormatVPC: true, FormatVDI: true} {
		if NeedsConversion(f) != want {
			t.Errorf("NeedsConversion(%s) = %v", f, !want)
		}
	}
}

func TestConvert(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "in.vmdk"), filepath.Join(dir, "out.qcow2")
	want := []string{"convert", "-q", "-f", "vmdk", "-O", "qcow2", src, dst + ".tmp"}
	runs := 0
	run := func(args []string) error {
		runs++
		if !slices.Equal(args, want) {
			t.Errorf("args %q, want %q", args, want)
		}
		return os.WriteFile(args[len(args)-1], []byte("QFI\xfb"), 0o644)
	}
	for range 2 {
		if err := Convert(context.Background(), FormatVMDK, src, dst, run); err != nil {
			t.Fatal(err)
		}
	}
	if runs != 1 {
		t.Errorf("qemu-img ran %d times, want once", runs)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "QFI\xfb" {
		t.Errorf("dst holds %q, %v", b, err)
	}

	failed := filepath.Join(dir, "failed.qcow2")
	err := Convert(context.Background(), FormatVDI, src, failed, func(args []string) error {
		os.WriteFile(args[len(args)-1], []byte("half"), 0o644)
		return errors.New("exit status 1")
	})
	if err == nil || !strings.Contains(err.Error(), src) {
		t.Fatalf("error %v, want one naming %s", err, src)
	}
	for _, p := range []string{failed, failed + ".tmp"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind", p)
		}
	}
}

func FuzzDetect(f *testing.F) {
	f.Add([]byte("QFI\xfb"))
	f.Add([]byte("# Disk DescriptorFile"))
	f.Add(header(0x8001, []byte("CD001"), headerSize))
	f.Add(header(0x40, []byte{0x7f, 0x10, 0xda, 0xbe}, 0x44))
	known := []Format{FormatRaw, FormatQcow2, FormatVMDK, FormatVHDX, FormatVPC, FormatVDI, FormatISO}
	f.Fuzz(func(t *testing.T, h []byte) {
		got := detect(h)
		if !slices.Contains(known, got) {
			t.Fatalf("detect gave %q", got)
		}
		if strings.HasPrefix(string(h), "QFI\xfb") && got != FormatQcow2 {
			t.Fatalf("qcow2 magic detected as %s", got)
		}
		if len(h) < 4 && got != FormatRaw {
			t.Fatalf("%d bytes detected as %s", len(h), got)
		}
	})
}
