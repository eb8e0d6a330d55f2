package image

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// quick keeps retries fast in tests.
func quick(url, dir string) FetchRequest {
	return FetchRequest{URL: url, CacheDir: dir, Backoff: time.Millisecond, Attempts: 4}
}

func mustFetch(t *testing.T, req FetchRequest) string {
	t.Helper()
	p, err := Fetch(context.Background(), req)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return p
}

func assertFile(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if sha256Hex(got) != sha256Hex(want) {
		t.Fatalf("%s: content differs (%d bytes, want %d)", p, len(got), len(want))
	}
}

// cacheFiles lists the cache directory, lock files aside.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), ".lock") {
			out = append(out, de.Name())
		}
	}
	return out
}

func TestFetchDownloadsWithProgressAndCaches(t *testing.T) {
	data := randomBytes(t, 3<<20+17)
	s := newFileServer(t, map[string][]byte{"/ubuntu.img": data})
	dir := t.TempDir()
	var calls [][2]int64
	req := quick(s.URL+"/ubuntu.img", dir)
	req.SHA256 = sha256Hex(data)
	req.Progress = func(done, total int64) { calls = append(calls, [2]int64{done, total}) }
	p := mustFetch(t, req)
	assertFile(t, p, data)
	if want := filepath.Join(dir, "ubuntu."+sha256Hex(data)[:12]+".img"); p != want {
		t.Errorf("path %s, want %s", p, want)
	}
	if len(calls) == 0 || calls[len(calls)-1] != [2]int64{int64(len(data)), int64(len(data))} {
		t.Fatalf("last progress %v, want done = total = %d", calls, len(data))
	}
	for i := 1; i < len(calls); i++ {
		if calls[i][0] < calls[i-1][0] {
			t.Fatalf("progress went back: %v", calls)
		}
	}
	if again := mustFetch(t, req); again != p {
		t.Errorf("second Fetch gave %s, want %s", again, p)
	}
	if n := s.gets.Load(); n != 1 {
		t.Errorf("server saw %d GETs, want 1 (the second Fetch must use the cache)", n)
	}
	files := cacheFiles(t, dir)
	if len(files) != 2 || !slices.Contains(files, filepath.Base(p)) {
		t.Errorf("cache holds %v, want the image and its record", files)
	}
}

func TestFetchResumes(t *testing.T) {
	data := randomBytes(t, 2<<20)
	cut := int64(700 << 10)
	tests := []struct {
		name        string
		ignoreRange bool
		wantRange   string // Range of the second GET
		etag        string
	}{
		{"range honoured", false, "bytes=716800-", `"v1"`},
		{"range ignored: start over", true, "bytes=716800-", `"v1"`},
		{"weak etag: Last-Modified validates", false, "bytes=716800-", `W/"v1"`},
		{"no validator: start over", false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFileServer(t, map[string][]byte{"/d.qcow2": data},
				behaviour{cutFirst: cut, ignoreRange: tt.ignoreRange, etag: tt.etag, noValidator: tt.etag == ""})
			req := quick(s.URL+"/d.qcow2", t.TempDir())
			req.SHA256 = sha256Hex(data)
			assertFile(t, mustFetch(t, req), data)
			r := s.rangeHeaders()
			if len(r) != 2 || r[0] != "" || r[1] != tt.wantRange {
				t.Errorf("Range headers %q, want [\"\" %q]", r, tt.wantRange)
			}
		})
	}
}

// A run that ends mid-download leaves the .part; the next run (a restarted
// container) asks only for the rest.
func TestFetchResumesAcrossRuns(t *testing.T) {
	data := randomBytes(t, 1<<20)
	s := newFileServer(t, map[string][]byte{"/d.raw": data}, behaviour{cutFirst: 300 << 10})
	dir := t.TempDir()
	req := quick(s.URL+"/d.raw", dir)
	req.Attempts = 1
	if _, err := Fetch(context.Background(), req); err == nil {
		t.Fatal("Fetch with one attempt over a cut connection succeeded")
	}
	if files := cacheFiles(t, dir); len(files) != 2 { // .part and .part.json
		t.Fatalf("after the cut the cache holds %v, want the .part and its meta", files)
	}
	req.Attempts = 0
	assertFile(t, mustFetch(t, req), data)
	if r := s.rangeHeaders(); r[len(r)-1] != "bytes=307200-" {
		t.Errorf("second run sent Range %q", r[len(r)-1])
	}
}

// A file that changed upstream between runs is not spliced onto the old
// .part: If-Range makes the server send it whole.
func TestFetchRestartsWhenFileChanged(t *testing.T) {
	old, cur := randomBytes(t, 1<<20), randomBytes(t, 1<<20)
	s := newFileServer(t, map[string][]byte{"/d.raw": old}, behaviour{cutFirst: 300 << 10})
	dir := t.TempDir()
	req := quick(s.URL+"/d.raw", dir)
	req.Attempts = 1
	if _, err := Fetch(context.Background(), req); err == nil {
		t.Fatal("expected the cut to fail the first run")
	}
	s.set("/d.raw", cur, `"v2"`)
	req.Attempts = 0
	assertFile(t, mustFetch(t, req), cur)
}

func TestFetchChecksumMismatch(t *testing.T) {
	data := randomBytes(t, 100<<10)
	s := newFileServer(t, map[string][]byte{"/d.img": data})
	dir := t.TempDir()
	req := quick(s.URL+"/d.img", dir)
	wrong := strings.Repeat("ab", 32)
	req.SHA256 = wrong
	_, err := Fetch(context.Background(), req)
	if !errors.Is(err, ErrChecksum) || errors.Is(err, ErrBadURL) {
		t.Fatalf("error %v: want ErrChecksum only", err)
	}
	for _, s := range []string{wrong, sha256Hex(data), s.URL + "/d.img"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if files := cacheFiles(t, dir); len(files) != 0 {
		t.Errorf("cache holds %v after a mismatch, want nothing", files)
	}
}

func TestFetchChecksumFile(t *testing.T) {
	data := randomBytes(t, 64<<10)
	sha := sha256Hex(data)
	tests := []struct {
		name, sums string
		wantErr    error
	}{
		{"GNU text", "0000000000000000000000000000000000000000000000000000000000000000  other.img\n" + sha + "  cloud.img\n", nil},
		{"GNU binary", sha + " *cloud.img\n", nil},
		{"BSD", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n# cloud.img: 65536 bytes\nSHA256 (cloud.img) = " + sha + "\n", nil},
		{"single entry, versioned name", "SHA256 (cloud-9.6-20260101.img) = " + sha + "\n", nil},
		{"lone hash", sha + "\n", nil},
		{"listed with a wrong hash", strings.Repeat("0", 64) + "  cloud.img\n", ErrChecksum},
		{"not listed", sha + "  a.img\n" + sha + "  b.img\n", ErrBadURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFileServer(t, map[string][]byte{"/cloud.img": data, "/SUMS": []byte(tt.sums)})
			req := quick(s.URL+"/cloud.img", t.TempDir())
			req.ChecksumURL = s.URL + "/SUMS"
			p, err := Fetch(context.Background(), req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertFile(t, p, data)
		})
	}
}

func TestFetchSHA512ChecksumFile(t *testing.T) {
	data := randomBytes(t, 64<<10)
	h := Digest{Algo: "sha512"}.newHash()
	h.Write(data)
	sums := []byte(strings.Repeat("1", 128) + "  other.qcow2\n" + hex.EncodeToString(h.Sum(nil)) + "  debian.qcow2\n")
	s := newFileServer(t, map[string][]byte{"/debian.qcow2": data, "/SHA512SUMS": sums})
	req := quick(s.URL+"/debian.qcow2", t.TempDir())
	req.ChecksumURL = s.URL + "/SHA512SUMS"
	assertFile(t, mustFetch(t, req), data)
}

func TestFetchBadURL(t *testing.T) {
	s := newFileServer(t, map[string][]byte{"/sums": []byte("x")})
	tests := []struct{ name, url, sums, sha string }{
		{"not http", "ftp://example.invalid/x.img", "", ""},
		{"no host", "http:///x.img", "", ""},
		{"garbage", "::", "", ""},
		{"404", s.URL + "/missing.img", "", ""},
		{"checksum file 404", s.URL + "/missing.img", s.URL + "/nosums", ""},
		{"bad pinned sha", s.URL + "/x.img", "", "1234"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := quick(tt.url, t.TempDir())
			req.ChecksumURL, req.SHA256 = tt.sums, tt.sha
			_, err := Fetch(context.Background(), req)
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("error %v: want ErrBadURL", err)
			}
		})
	}
	if n := s.gets.Load(); n != 0 {
		t.Errorf("a missing file was asked for %d times as a file", n)
	}
}

func TestFetchRetries(t *testing.T) {
	data := randomBytes(t, 10<<10)
	t.Run("503 then success", func(t *testing.T) {
		s := newFileServer(t, map[string][]byte{"/d.img": data}, behaviour{fail: 2})
		assertFile(t, mustFetch(t, quick(s.URL+"/d.img", t.TempDir())), data)
		if n := s.gets.Load(); n != 3 {
			t.Errorf("%d GETs, want 3", n)
		}
	})
	t.Run("503 forever: gives up", func(t *testing.T) {
		s := newFileServer(t, map[string][]byte{"/d.img": data}, behaviour{fail: 100})
		_, err := Fetch(context.Background(), quick(s.URL+"/d.img", t.TempDir()))
		if err == nil || errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), "503") {
			t.Fatalf("error %v: want a 503 that is not ErrBadURL", err)
		}
		if n := s.gets.Load(); n != 4 {
			t.Errorf("%d GETs, want Attempts = 4", n)
		}
	})
	t.Run("429 is retried", func(t *testing.T) {
		s := newFileServer(t, map[string][]byte{"/d.img": data}, behaviour{fail: 1, failStatus: 429})
		assertFile(t, mustFetch(t, quick(s.URL+"/d.img", t.TempDir())), data)
	})
	t.Run("403 is not", func(t *testing.T) {
		s := newFileServer(t, map[string][]byte{"/d.img": data}, behaviour{fail: 1, failStatus: 403})
		_, err := Fetch(context.Background(), quick(s.URL+"/d.img", t.TempDir()))
		if !errors.Is(err, ErrBadURL) || s.gets.Load() != 1 {
			t.Fatalf("error %v after %d GETs: want ErrBadURL after 1", err, s.gets.Load())
		}
	})
}

func TestFetchStalls(t *testing.T) {
	data := randomBytes(t, 256<<10)
	t.Run("silent server: gives up", func(t *testing.T) {
		s := newFileServer(t, map[string][]byte{"/d.img": data}, behaviour{delay: 200 * time.Millisecond})
		req := quick(s.URL+"/d.img", t.TempDir())
		req.StallTimeout, req.Attempts = 20*time.Millisecond, 2
		_, err := Fetch(context.Background(), req)
		if err == nil || !strings.Contains(err.Error(), "no data for") {
			t.Fatalf("error %v: want a stall", err)
		}
	})
	t.Run("stalls between bursts: resumes to the end", func(t *testing.T) {
		s := newFileServer(t, map[string][]byte{"/d.img": data}, behaviour{delay: 200 * time.Millisecond, slowAfter: 64 << 10})
		req := quick(s.URL+"/d.img", t.TempDir())
		// Long enough for a TLS handshake on a busy machine.
		req.StallTimeout, req.Attempts = 100*time.Millisecond, 2
		assertFile(t, mustFetch(t, req), data)
		if n := s.gets.Load(); n < 4 {
			t.Errorf("%d GETs: each burst should have been resumed", n)
		}
	})
}

func TestFetchHonoursContext(t *testing.T) {
	data := randomBytes(t, 4<<20)
	s := newFileServer(t, map[string][]byte{"/d.img": data}, behaviour{delay: 20 * time.Millisecond})
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	req := quick(s.URL+"/d.img", dir)
	req.Progress = func(done, _ int64) {
		if done > 64<<10 {
			cancel()
		}
	}
	start := time.Now()
	_, err := Fetch(ctx, req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %s", d)
	}
	if files := cacheFiles(t, dir); !slices.ContainsFunc(files, func(f string) bool { return strings.HasSuffix(f, ".part") }) {
		t.Errorf("cache %v: the .part should stay for a resume", files)
	}
}

// A new pinned digest for the same URL is a new image: it lands beside the
// old one, which an existing VM's overlay may still be made on.
func TestFetchNewDigestKeepsOldImage(t *testing.T) {
	v1, v2 := randomBytes(t, 50<<10), randomBytes(t, 50<<10)
	s := newFileServer(t, map[string][]byte{"/latest.img": v1})
	dir := t.TempDir()
	req := quick(s.URL+"/latest.img", dir)
	req.SHA256 = sha256Hex(v1)
	p1 := mustFetch(t, req)
	s.set("/latest.img", v2, `"v2"`)
	req.SHA256 = sha256Hex(v2)
	p2 := mustFetch(t, req)
	if p1 == p2 {
		t.Fatalf("both versions at %s", p1)
	}
	assertFile(t, p1, v1)
	assertFile(t, p2, v2)
}

func TestFetchRehashesWhenTimestampChanged(t *testing.T) {
	data := randomBytes(t, 200<<10)
	s := newFileServer(t, map[string][]byte{"/d.img": data})
	req := quick(s.URL+"/d.img", t.TempDir())
	p := mustFetch(t, req)
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	if again := mustFetch(t, req); again != p || s.gets.Load() != 1 {
		t.Fatalf("after touch: %s with %d GETs, want %s with 1", again, s.gets.Load(), p)
	}
	// Same size, other content: the re-hash fails and the image is fetched anew.
	if err := os.WriteFile(p, randomBytes(t, len(data)), 0o644); err != nil {
		t.Fatal(err)
	}
	assertFile(t, mustFetch(t, req), data)
	if n := s.gets.Load(); n != 2 {
		t.Errorf("%d GETs, want 2", n)
	}
}

func TestFetchConcurrentGoroutinesDownloadOnce(t *testing.T) {
	data := randomBytes(t, 1<<20)
	s := newFileServer(t, map[string][]byte{"/d.img": data}, behaviour{delay: time.Millisecond})
	dir := t.TempDir()
	var wg sync.WaitGroup
	paths := make([]string, 8)
	errs := make([]error, 8)
	for i := range paths {
		wg.Go(func() {
			paths[i], errs[i] = Fetch(context.Background(), quick(s.URL+"/d.img", dir))
		})
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil || paths[i] != paths[0] {
			t.Fatalf("goroutine %d: %s, %v; goroutine 0: %s", i, paths[i], errs[i], paths[0])
		}
	}
	assertFile(t, paths[0], data)
	if n := s.gets.Load(); n != 1 {
		t.Errorf("%d GETs, want 1", n)
	}
}

// A run killed after the last byte but before installing leaves a whole
// .part: the next run learns so from a 416 and installs it.
func TestFetchCompletePartIsInstalled(t *testing.T) {
	data := randomBytes(t, 100<<10)
	s := newFileServer(t, map[string][]byte{"/d.img": data})
	dir := t.TempDir()
	e := newEntry(dir, s.URL+"/d.img")
	if err := os.WriteFile(e.part(), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.partMeta(), []byte(`{"url":"`+s.URL+`/d.img","validator":"\"v1\""}`), 0o644); err != nil {
		t.Fatal(err)
	}
	req := quick(s.URL+"/d.img", dir)
	req.SHA256 = sha256Hex(data)
	assertFile(t, mustFetch(t, req), data)
	if r := s.rangeHeaders(); len(r) != 1 || r[0] != "bytes=102400-" {
		t.Errorf("Range headers %q", r)
	}
}
