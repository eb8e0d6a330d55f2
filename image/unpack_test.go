package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// diskLike is random data with long zero runs, as a raw disk has.
func diskLike(t *testing.T) []byte {
	var b []byte
	for i := range 6 {
		b = append(b, randomBytes(t, 20<<10+i)...)
		b = append(b, make([]byte, 256<<10)...)
	}
	return b
}

func compressXZ(t *testing.T, data []byte) []byte {
	if path, err := exec.LookPath("xz"); err == nil {
		cmd := exec.Command(path, "-c", "-1")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("xz: %v", err)
		}
		return out
	}
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compressGzip(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compressZstd(t *testing.T, data []byte) []byte {
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(data, nil)
}

func TestFetchUnpacks(t *testing.T) {
	data := diskLike(t)
	tests := []struct {
		name, file, wantName string
		compress             func(*testing.T, []byte) []byte
	}{
		{"xz", "disk.raw.xz", "disk.raw", compressXZ},
		{"gzip", "disk.qcow2.gz", "disk.qcow2", compressGzip},
		{"zstd", "disk.img.zst", "disk.img", compressZstd},
		{"xz without the suffix", "disk.img", "disk.img", compressXZ},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			packed := tt.compress(t, data)
			s := newFileServer(t, map[string][]byte{"/" + tt.file: packed})
			dir := t.TempDir()
			req := quick(s.URL+"/"+tt.file, dir)
			req.SHA256 = sha256Hex(packed) // the publisher's sum is of the download
			p := mustFetch(t, req)
			assertFile(t, p, data)
			stem, ext, _ := strings.Cut(tt.wantName, ".")
			if want := stem + "." + sha256Hex(packed)[:12] + "." + ext; filepath.Base(p) != want {
				t.Errorf("image %s, want %s", filepath.Base(p), want)
			}
			if files := cacheFiles(t, dir); len(files) != 2 {
				t.Errorf("cache holds %v, want the image and its record", files)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(p, &st); err == nil {
				t.Logf("%d bytes use %d on disk", len(data), st.Blocks*512)
			}
			// The record covers the unpacked file: a touch re-hashes it.
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(p, later, later); err != nil {
				t.Fatal(err)
			}
			if again := mustFetch(t, req); again != p || s.gets.Load() != 1 {
				t.Errorf("after touch: %s with %d GETs", again, s.gets.Load())
			}
		})
	}
}

func TestFetchCorruptArchiveLeavesNothing(t *testing.T) {
	packed := compressXZ(t, diskLike(t))
	packed = packed[:len(packed)/2]
	s := newFileServer(t, map[string][]byte{"/d.xz": packed})
	dir := t.TempDir()
	_, err := Fetch(context.Background(), quick(s.URL+"/d.xz", dir))
	if err == nil || !strings.Contains(err.Error(), "unpacking") {
		t.Fatalf("error %v: want an unpacking error", err)
	}
	if files := cacheFiles(t, dir); len(files) != 0 {
		t.Errorf("cache holds %v", files)
	}
}

func TestWriteSparseKeepsContent(t *testing.T) {
	for _, data := range [][]byte{
		nil,
		make([]byte, 3*sparseBlock+5),            // all zeros: one hole and a size
		append(make([]byte, 5000), 1, 2, 3),      // data after a partial zero block
		append([]byte{9}, make([]byte, 9000)...), // trailing hole
		diskLike(t),
	} {
		f, err := os.CreateTemp(t.TempDir(), "sparse")
		if err != nil {
			t.Fatal(err)
		}
		if err := writeSparse(f, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		assertFile(t, f.Name(), data)
	}
}

func TestUnpackHonoursContext(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "in.gz")
	if err := os.WriteFile(src, compressGzip(t, diskLike(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := unpackFile(ctx, unpackJob{src: src, dst: filepath.Join(dir, "out")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
}
