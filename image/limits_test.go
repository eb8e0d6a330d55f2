package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// countingServer is a plain http server that counts what reaches it.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s, &n
}

func TestFetchRefusesPlainHTTPWithoutDigest(t *testing.T) {
	data := []byte("image bytes")
	plain, hits := countingServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write(data) })
	dir := t.TempDir()
	_, err := Fetch(context.Background(), quick(plain.URL+"/d.img", dir))
	if !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), "BOOT_FROM_SHA256") {
		t.Fatalf("error %v, want ErrBadURL with advice", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server saw %d requests, want none", n)
	}
	// A checksum file fetched over plain http vouches for nothing either.
	req := quick(plain.URL+"/d.img", dir)
	req.ChecksumURL = plain.URL + "/SUMS"
	if _, err := Fetch(context.Background(), req); !errors.Is(err, ErrBadURL) {
		t.Errorf("http checksum file: %v, want ErrBadURL", err)
	}
	req = quick(plain.URL+"/d.img", dir)
	req.SHA256 = sha256Hex(data)
	if _, err := Fetch(context.Background(), req); err != nil {
		t.Errorf("http with a pinned digest: %v", err)
	}
}

func TestFetchRedirects(t *testing.T) {
	plain, plainHits := countingServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) })
	tests := []struct {
		name, location string
	}{
		{"https to http", plain.URL + "/d.img"},
		{"to file", "file:///etc/shadow"},
		{"to ftp", "ftp://127.0.0.1/d.img"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				http.Redirect(w, r, tt.location, http.StatusFound)
			}))
			defer s.Close()
			dir := t.TempDir()
			_, err := Fetch(context.Background(), quick(s.URL+"/d.img", dir))
			if !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), "redirects") {
				t.Fatalf("error %v, want ErrBadURL about the redirect", err)
			}
			if n := hits.Load(); n != 1 {
				t.Errorf("%d requests, want 1: a refused redirect is not retried", n)
			}
			if names := cacheFiles(t, dir); len(names) > 0 {
				t.Errorf("left in the cache: %v", names)
			}
		})
	}
	if n := plainHits.Load(); n != 0 {
		t.Errorf("the plain http server saw %d requests", n)
	}
}

func TestFetchDownloadCap(t *testing.T) {
	data := randomBytes(t, 256<<10)
	tests := []struct {
		name    string
		chunked bool // no Content-Length: the cap stops the body
	}{{"announced", false}, {"chunked", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent atomic.Int64
			s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !tt.chunked {
					w.Header().Set("Content-Length", "262144")
				}
				for i := 0; i < len(data); i += 16 << 10 {
					n, err := w.Write(data[i : i+16<<10])
					sent.Add(int64(n))
					if err != nil {
						return
					}
					w.(http.Flusher).Flush()
				}
			}))
			defer s.Close()
			dir := t.TempDir()
			req := quick(s.URL+"/d.img", dir)
			req.MaxSize = 64 << 10
			_, err := Fetch(context.Background(), req)
			var le *LimitError
			if !errors.As(err, &le) || le.Var != "DOWNLOAD_MAX_SIZE" {
				t.Fatalf("error %v, want a DOWNLOAD_MAX_SIZE LimitError", err)
			}
			if names := cacheFiles(t, dir); len(names) > 0 {
				t.Errorf("left in the cache: %v", names)
			}
		})
	}
}

func TestFetchChecksFreeSpace(t *testing.T) {
	old := freeSpace
	t.Cleanup(func() { freeSpace = old })
	freeSpace = func(string) (int64, error) { return 100 << 10, nil }
	s := newFileServer(t, map[string][]byte{"/d.img": randomBytes(t, 1<<20)})
	_, err := Fetch(context.Background(), quick(s.URL+"/d.img", t.TempDir()))
	var se *SpaceError
	if !errors.As(err, &se) || se.Need != 1<<20 || se.Free != 100<<10 {
		t.Fatalf("error %v, want a SpaceError", err)
	}
	for _, want := range []string{"DATA_DIR", "1.0 MiB", "100.0 KiB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestFetchUnpackCap: a 30 KB .xz that unpacks to 200 MB stops at the cap,
// by its index before a byte is written, and by the bytes themselves when
// the archive lies about its size.
func TestFetchUnpackCap(t *testing.T) {
	bomb, err := os.ReadFile("testdata/zeros-200M.xz")
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	z := gzip.NewWriter(&gz)
	z.Write(make([]byte, 8<<20))
	z.Close()
	lying := gz.Bytes()
	binary.LittleEndian.PutUint32(lying[len(lying)-4:], 1000) // ISIZE says 1000 bytes
	tests := []struct {
		name string
		data []byte
	}{{"xz index", bomb}, {"gzip lying about its size", lying}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFileServer(t, map[string][]byte{"/d.raw.x": tt.data})
			dir := t.TempDir()
			req := quick(s.URL+"/d.raw.x", dir)
			req.MaxUnpacked = 1 << 20
			_, err := Fetch(context.Background(), req)
			var le *LimitError
			if !errors.As(err, &le) || le.Var != "EXTRACT_MAX_SIZE" {
				t.Fatalf("error %v, want an EXTRACT_MAX_SIZE LimitError", err)
			}
			if names := cacheFiles(t, dir); len(names) > 0 {
				t.Errorf("left in the cache: %v", names)
			}
		})
	}
}

func TestFetchUnpackChecksFreeSpace(t *testing.T) {
	bomb, err := os.ReadFile("testdata/zeros-200M.xz")
	if err != nil {
		t.Fatal(err)
	}
	old := freeSpace
	t.Cleanup(func() { freeSpace = old })
	freeSpace = func(string) (int64, error) { return 1 << 30, nil }
	s := newFileServer(t, map[string][]byte{"/d.raw.xz": bomb})
	dir := t.TempDir()
	freeSpace = func(string) (int64, error) { return 100 << 20, nil }
	_, err = Fetch(context.Background(), quick(s.URL+"/d.raw.xz", dir))
	var se *SpaceError
	if !errors.As(err, &se) || se.Need != 200<<20 || !strings.Contains(err.Error(), "unpacking") {
		t.Fatalf("error %v, want a SpaceError for unpacking 200 MiB", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "d.raw")); !os.IsNotExist(err) {
		t.Errorf("unpacked image exists: %v", err)
	}
}

func TestXZUnpackedSize(t *testing.T) {
	bomb, err := os.ReadFile("testdata/zeros-200M.xz")
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := xzUnpackedSize(bytes.NewReader(bomb), int64(len(bomb))); !ok || n != 200<<20 {
		t.Errorf("xzUnpackedSize = %d, %v", n, ok)
	}
	if _, ok := xzUnpackedSize(bytes.NewReader(bomb[:100]), 100); ok {
		t.Error("a truncated file gave a size")
	}
}
