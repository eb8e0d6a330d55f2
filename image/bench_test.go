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
	"strings"
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

// BenchmarkUnpack1GiB unpacks one 1 GiB raw image packed in each format
// vmrunner reads, and in the same rounds has the command-line tool unpack
// it to a file (then sync, as unpacking ends with an fsync); medians of
// the unpacked bytes per second are reported. The image is
// $VMRUNNER_BENCH_IMAGE's first GiB (e.g. a cloud guest's disk as raw),
// else a synthetic disk (bigImage's shape). Packing uses the tools and
// is not timed; a format whose tool is missing is skipped. Run with
// -benchtime=2x: each round unpacks 2 GiB per format.
func BenchmarkUnpack1GiB(b *testing.B) {
	const size = 1 << 30
	dir := b.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	if src := os.Getenv("VMRUNNER_BENCH_IMAGE"); src != "" {
		run(b, "sh", "-c", `head -c 1073741824 "$0" >"$1" && truncate -s 1G "$1"`, src, raw)
	} else {
		p, _ := bigImage(b)
		run(b, "sh", "-c", `cat "$0" "$0" >"$1"`, p, raw)
	}
	sh := func(script string) []string { return []string{"sh", "-c", script} }
	formats := []struct {
		name, file string
		pack       []string // run in dir
		tool       []string // unpacks $IN to stdout
	}{
		{"xz", "disk.raw.xz", sh("xz -T1 -c disk.raw >disk.raw.xz"), []string{"xz -dc"}},
		{"gzip", "disk.raw.gz", sh("gzip -c disk.raw >disk.raw.gz"), []string{"gzip -dc", "pigz -dc"}},
		{"zstd", "disk.raw.zst", sh("zstd -q -c disk.raw >disk.raw.zst"), []string{"zstd -dc"}},
		{"bzip2", "disk.raw.bz2", sh("bzip2 -c disk.raw >disk.raw.bz2"), []string{"bzip2 -dc"}},
		{"zip", "disk.zip", sh("zip -q disk.zip disk.raw"), []string{"unzip -p"}},
		{"7z", "disk.7z", sh("7z a -bd -mmt=2 disk.7z disk.raw >/dev/null"), []string{"7z x -so"}},
		{"tar", "disk.tar", sh("tar -cf disk.tar disk.raw"), []string{"tar -xOf"}},
		{"tar.xz", "disk.tar.xz", sh("tar -cf - disk.raw | xz -T1 >disk.tar.xz"), []string{"tar -xOJf"}},
	}
	for _, f := range formats {
		b.Run(f.name, func(b *testing.B) {
			tool := strings.Fields(f.tool[0])[0]
			if _, err := exec.LookPath(tool); err != nil {
				b.Skipf("%s is not installed", tool)
			}
			in := filepath.Join(dir, f.file)
			if _, err := os.Stat(in); err != nil {
				cmd := exec.Command(f.pack[0], f.pack[1:]...)
				cmd.Dir = dir
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("packing %s: %v: %s", f.name, err, out)
				}
			}
			if st, err := os.Stat(in); err == nil {
				b.Logf("%s: %d bytes packed", f.file, st.Size())
			}
			b.SetBytes(size)
			goT := []time.Duration{}
			toolT := make([][]time.Duration, len(f.tool))
			for b.Loop() {
				out := filepath.Join(b.TempDir(), "out.raw")
				start := time.Now()
				if _, err := unpackFile(context.Background(), unpackJob{src: in, dst: out}); err != nil {
					b.Fatal(err)
				}
				goT = append(goT, time.Since(start))
				b.StopTimer()
				os.Remove(out)
				for i, t := range f.tool {
					start := time.Now()
					run(b, "sh", "-c", t+` "$0" >"$1" && sync "$1"`, in, out)
					toolT[i] = append(toolT[i], time.Since(start))
					os.Remove(out)
				}
				b.StartTimer()
			}
			mbps := func(ts []time.Duration) float64 { return float64(size) / 1e6 / median(ts).Seconds() }
			b.ReportMetric(mbps(goT), "vmrunner-MB/s")
			for i, t := range f.tool {
				b.ReportMetric(mbps(toolT[i]), strings.ReplaceAll(strings.Fields(t)[0], "-", "")+"-MB/s")
			}
		})
	}
}
