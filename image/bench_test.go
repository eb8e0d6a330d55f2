package image

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// bigImage writes a 512 MiB file shaped like a raw disk: random 1 MiB
// extents every 8 MiB, zeros between (written, not holes, so both
// downloaders read the same bytes).
func bigImage(b *testing.B) (string, int64) {
	const size = 512 << 20
	p := filepath.Join(b.TempDir(), "big.raw")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	zero := make([]byte, 1<<20)
	for off := 0; off < size; off += len(chunk) {
		buf := zero
		if off%(8<<20) == 0 {
			rand.Read(chunk)
			buf = chunk
		}
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	return p, size
}

func fileServerOf(b *testing.B, p string) string {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, p)
	}))
	b.Cleanup(s.Close)
	return s.URL + "/big.raw"
}

// BenchmarkFetch512MiB measures a whole Fetch (download, sha256, fsync,
// rename) from a loopback server. Each round also times curl -o of the same
// URL, and curl -o followed by sync of the file (curl leaves the data in
// the page cache; Fetch waits for the disk), in turns so that load from
// elsewhere hits all three alike; the medians are reported.
func BenchmarkFetch512MiB(b *testing.B) {
	p, size := bigImage(b)
	url := fileServerOf(b, p)
	curl, curlErr := exec.LookPath("curl")
	b.SetBytes(size)
	var fetchT, curlT, curlSyncT []time.Duration
	timed := func(f func()) time.Duration {
		start := time.Now()
		f()
		return time.Since(start)
	}
	for b.Loop() {
		dir := b.TempDir()
		fetchT = append(fetchT, timed(func() {
			if _, err := Fetch(context.Background(), FetchRequest{URL: url, CacheDir: dir}); err != nil {
				b.Fatal(err)
			}
		}))
		b.StopTimer()
		os.RemoveAll(dir)
		if curlErr == nil {
			out := filepath.Join(b.TempDir(), "curl.raw")
			curlT = append(curlT, timed(func() { run(b, curl, "-s", "-f", "-o", out, url) }))
			os.Remove(out)
			curlSyncT = append(curlSyncT, timed(func() { run(b, curl, "-s", "-f", "-o", out, url); run(b, "sync", out) }))
			os.Remove(out)
		}
		b.StartTimer()
	}
	mbps := func(ts []time.Duration) float64 { return float64(size) / 1e6 / median(ts).Seconds() }
	b.ReportMetric(mbps(fetchT), "median-MB/s")
	if curlErr != nil {
		b.Log("curl not installed: no comparison")
		return
	}
	b.ReportMetric(mbps(curlT), "curl-MB/s")
	b.ReportMetric(mbps(curlSyncT), "curl+sync-MB/s")
}

func run(b *testing.B, name string, args ...string) {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func median(ts []time.Duration) time.Duration {
	s := slices.Clone(ts)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkFetchCached measures a start that finds its image cached.
func BenchmarkFetchCached(b *testing.B) {
	data := make([]byte, 1<<20)
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(data)
	}))
	b.Cleanup(s.Close)
	req := FetchRequest{URL: s.URL + "/img.qcow2", CacheDir: b.TempDir()}
	if _, err := Fetch(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Fetch(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
