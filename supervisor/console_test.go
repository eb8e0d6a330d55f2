package supervisor

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

type report struct {
	mu   sync.Mutex
	seen []string
}

func (r *report) add(name, what string, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, name+" "+what)
}

func (r *report) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

type failingWriter struct{ calls int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.calls++
	return 0, unix.ENOSPC
}

// blockingWriter blocks every Write until released, as a stdout nobody
// reads does.
type blockingWriter struct{ release chan struct{} }

func (b blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	return len(p), nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// copyWithin copies n lines through w and fails if that takes longer than
// a generous bound: a blocked fan-out would hang here for ever.
func copyWithin(t *testing.T, w io.Writer, n int) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			if _, err := w.Write([]byte("console line\n")); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the fan-out blocked")
	}
}

func TestFanoutDropsFailingSink(t *testing.T) {
	var rep report
	bad := &failingWriter{}
	var good lockedBuffer
	f := NewFanout(rep.add, map[string]io.Writer{"serial.log": bad, "stdout": &good})
	copyWithin(t, f, 1000)
	f.Close(5 * time.Second)
	if got := strings.Count(good.String(), "console line\n"); got != 1000 {
		t.Errorf("the healthy sink got %d lines, want 1000", got)
	}
	if bad.calls != 1 {
		t.Errorf("the failing sink was written %d times after failing once", bad.calls)
	}
	if got := rep.get(); len(got) != 1 || got[0] != "serial.log failed" {
		t.Errorf("reports = %q, want one failure", got)
	}
}

func TestFanoutNeverWaitsForBlockedSink(t *testing.T) {
	var rep report
	blocked := blockingWriter{release: make(chan struct{})}
	var good lockedBuffer
	f := NewFanout(rep.add, map[string]io.Writer{"stdout": blocked, "serial.log": &good})
	const line = "console line\n"
	copyWithin(t, f, 2*sinkBuffer/len(line))
	start := time.Now()
	f.Close(100 * time.Millisecond) // the blocked sink is abandoned
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close waited %s for a blocked sink", d)
	}
	close(blocked.release)
	// The healthy sink gets at least a whole buffer's worth even when the
	// writer outruns it.
	if got := strings.Count(good.String(), line); got < sinkBuffer/len(line) {
		t.Errorf("the healthy sink got %d lines, want at least %d", got, sinkBuffer/len(line))
	}
	behind := 0
	for _, r := range rep.get() {
		switch r {
		case "stdout behind":
			behind++
		case "serial.log behind":
		default:
			t.Errorf("unexpected report %q", r)
		}
	}
	if behind != 1 {
		t.Errorf("the blocked sink was reported %d times, want once", behind)
	}
}

// A closed pipe as stdout (vmrunner | head) fails with EPIPE: dropped, and
// the process lives on (main catches SIGPIPE; the test binary would die of
// it on fd 1 or 2 only, so a pipe's fd shows the EPIPE path).
func TestFanoutClosedPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	var rep report
	var good lockedBuffer
	f := NewFanout(rep.add, map[string]io.Writer{"stdout": w, "serial.log": &good})
	copyWithin(t, f, 100)
	f.Close(5 * time.Second)
	if got := rep.get(); len(got) != 1 || got[0] != "stdout failed" {
		t.Errorf("reports = %q, want one failure", got)
	}
	if got := strings.Count(good.String(), "\n"); got != 100 {
		t.Errorf("serial.log got %d lines, want 100", got)
	}
}

func TestRotatingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "serial.log")
	if err := os.WriteFile(path, []byte("old run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRotating(path, 32)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"0123456789\n", "abcdefghij\n", "ABCDEFGHIJ\n", "klmnopqrst\n"} {
		if n, err := r.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	big := strings.Repeat("x", 40) + "END\n"
	if n, err := r.Write([]byte(big)); err != nil || n != len(big) {
		t.Fatalf("Write(big) = %d, %v", n, err)
	}
	r.Close()
	tests := []struct{ file, want string }{
		{"serial.log.1", "ABCDEFGHIJ\nklmnopqrst\n"},
		{"serial.log", big[len(big)-32:]},
	}
	for _, tc := range tests {
		b, err := os.ReadFile(filepath.Join(dir, tc.file))
		if err != nil || string(b) != tc.want {
			t.Errorf("%s = %q (%v), want %q", tc.file, b, err, tc.want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("the folder holds %d files, want serial.log and one old file", len(entries))
	}
}

func TestRotatingFileRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	path := filepath.Join(dir, "serial.log")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRotating(path, 1<<20); !errors.Is(err, unix.ELOOP) {
		t.Errorf("OpenRotating(symlink) = %v, want ELOOP", err)
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("the symlink's target was created: %v", err)
	}
}

func TestReadLinesCutsLongLines(t *testing.T) {
	long := strings.Repeat("a", 100<<10)
	in := "first\r\n" + long + "\nafter\n" + long + "\nlast without newline"
	var got []string
	readLines(strings.NewReader(in), func(l string) { got = append(got, l) })
	if len(got) != 5 {
		t.Fatalf("got %d lines, want 5", len(got))
	}
	if got[0] != "first" || got[2] != "after" || got[4] != "last without newline" {
		t.Errorf("lines = %q, %q, %q", got[0], got[2], got[4])
	}
	for _, i := range []int{1, 3} {
		if len(got[i]) > maxLine+16 || !strings.HasSuffix(got[i], "[cut]") {
			t.Errorf("line %d: %d bytes, ends %q; want cut at %d", i, len(got[i]), got[i][len(got[i])-10:], maxLine)
		}
	}
}

// logLines must read a pipe to its end whatever its lines, or QEMU blocks
// writing its stderr.
func TestLogLinesDrainsLongLines(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	tail := make(chan string, 1)
	go func() { tail <- logLines(zap.NewNop(), r) }()
	for i := 0; i < 5; i++ {
		if _, err := w.Write([]byte(strings.Repeat("e", 100<<10) + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Write([]byte("qemu-system-x86_64: the end\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	select {
	case got := <-tail:
		if !strings.HasSuffix(got, "qemu-system-x86_64: the end") {
			t.Errorf("tail ends %q", got[len(got)-40:])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stderr reader stopped")
	}
}

func TestExitCode(t *testing.T) {
	exited := func(code int) unix.WaitStatus { return unix.WaitStatus(code << 8) }
	killed := unix.WaitStatus(unix.SIGKILL)
	tests := []struct {
		name                         string
		ws                           unix.WaitStatus
		stopping, forced, hostSignal bool
		want                         int
	}{
		{"guest powered off", exited(0), false, false, false, ExitPoweredOff},
		{"powered off after stop", exited(0), true, false, false, ExitPoweredOff},
		{"QEMU failed", exited(1), false, false, false, ExitFault},
		{"killed by someone", killed, false, false, false, ExitFault},
		{"someone's SIGTERM to QEMU", exited(0), false, false, true, ExitFault},
		{"someone's SIGTERM during a stop", exited(0), true, false, true, ExitFault},
		{"forced", killed, true, true, false, ExitForced},
	}
	for _, tc := range tests {
		if got := ExitCode(tc.ws, tc.forced, tc.hostSignal); got != tc.want {
			t.Errorf("%s: exit %d, want %d", tc.name, got, tc.want)
		}
	}
}

// BenchmarkFanout: what one 4 KiB read from QEMU costs the drain
// (ns/op), and how much of it reaches serial.log (delivered-MB/s): beyond
// what the file takes, output is dropped, never waited for.
func BenchmarkFanout(b *testing.B) {
	path := filepath.Join(b.TempDir(), "serial.log")
	r, err := OpenRotating(path, 1<<40)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	f := NewFanout(func(string, string, error) {}, map[string]io.Writer{"serial.log": r, "stdout": io.Discard})
	p := bytes.Repeat([]byte("x"), 4096)
	b.SetBytes(int64(len(p)))
	start := time.Now()
	for b.Loop() {
		_, _ = f.Write(p)
	}
	f.Close(10 * time.Second)
	if st, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(st.Size())/1e6/time.Since(start).Seconds(), "delivered-MB/s")
	}
}

// BenchmarkMultiWriterBaseline is the blocking io.MultiWriter it replaced.
func BenchmarkMultiWriterBaseline(b *testing.B) {
	r, err := OpenRotating(filepath.Join(b.TempDir(), "serial.log"), 1<<40)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	w := io.MultiWriter(r, io.Discard)
	p := bytes.Repeat([]byte("x"), 4096)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		_, _ = w.Write(p)
	}
}
