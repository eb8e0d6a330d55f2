package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// QEMU blocks when its console pipe is full, and a blocked serial port
// freezes the guest's kernel. So the console is drained by one reader that
// never waits on anyone: each destination (serial.log, stdout) gets its own
// goroutine and a bounded queue, and what a slow or failing destination
// cannot take is dropped.

// sinkBuffer is how many bytes a destination may fall behind before its
// output is dropped.
const sinkBuffer = 1 << 20

// Fanout copies writes to several destinations without ever blocking on
// them. A destination whose Write fails is reported once and dropped; one
// that falls more than sinkBuffer behind loses output (reported once) until
// it catches up. Write always succeeds.
type Fanout struct {
	sinks  []*sink
	report func(name, what string, err error)
}

type sink struct {
	name    string
	w       io.Writer
	wake    chan struct{} // one token: pending has data or closed was set
	done    chan struct{}
	mu      sync.Mutex
	pending []byte
	closed  bool
	dead    bool // its Write failed: nothing more is kept for it
	late    bool // it fell behind once: reported, not again
}

// NewFanout starts one writer goroutine per destination; a nil one is
// left out. report hears of a destination that failed ("failed") or first
// fell behind ("behind").
func NewFanout(report func(name, what string, err error), dests map[string]io.Writer) *Fanout {
	f := &Fanout{report: report}
	for name, w := range dests {
		if w == nil {
			continue
		}
		s := &sink{name: name, w: w, wake: make(chan struct{}, 1), done: make(chan struct{})}
		f.sinks = append(f.sinks, s)
		go f.drain(s)
	}
	return f
}

func (f *Fanout) drain(s *sink) {
	defer close(s.done)
	var spare []byte // the buffer written last, reused for what comes next
	for {
		s.mu.Lock()
		if len(s.pending) == 0 {
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			<-s.wake
			continue
		}
		b := s.pending
		s.pending = spare[:0]
		s.mu.Unlock()
		if _, err := s.w.Write(b); err != nil {
			s.mu.Lock()
			s.dead, s.pending = true, nil
			s.mu.Unlock()
			f.report(s.name, "failed", err)
			return
		}
		spare = b
	}
}

func (s *sink) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Write keeps p for every live destination.
func (f *Fanout) Write(p []byte) (int, error) {
	for _, s := range f.sinks {
		s.mu.Lock()
		switch {
		case s.dead:
		case len(s.pending)+len(p) > sinkBuffer:
			if !s.late {
				s.late = true
				defer f.report(s.name, "behind", nil)
			}
		default:
			s.pending = append(s.pending, p...)
		}
		s.mu.Unlock()
		s.poke()
	}
	return len(p), nil
}

// Close stops taking writes and waits up to grace for the destinations to
// write what they hold; a destination still blocked after that is
// abandoned.
func (f *Fanout) Close(grace time.Duration) {
	for _, s := range f.sinks {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.poke()
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	for _, s := range f.sinks {
		select {
		case <-s.done:
		case <-t.C:
			return
		}
	}
}

// RotatingFile appends to a file and, when the next write would take it
// over max bytes, renames it to path.1 (replacing the older one) and starts
// a new file: the guest's console can fill at most twice max on disk.
type RotatingFile struct {
	path string
	max  int64
	f    *os.File
	size int64
}

// OpenRotating opens path for appending. It refuses a symlink, so a planted
// link cannot make the console write elsewhere.
func OpenRotating(path string, max int64) (*RotatingFile, error) {
	r := &RotatingFile{path: path, max: max}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Write appends p, rotating first when p would not fit. A single write
// larger than max goes alone into a fresh file, cut to max.
func (r *RotatingFile) Write(p []byte) (int, error) {
	n := len(p)
	if r.max > 0 && r.size+int64(len(p)) > r.max {
		if r.size > 0 {
			if err := r.rotate(); err != nil {
				return 0, err
			}
		}
		if int64(len(p)) > r.max {
			p = p[int64(len(p))-r.max:]
		}
	}
	if r.f == nil {
		return 0, errors.New("serial log is closed")
	}
	w, err := r.f.Write(p)
	r.size += int64(w)
	if err != nil {
		return w, err
	}
	return n, nil
}

func (r *RotatingFile) rotate() error {
	if err := r.f.Close(); err != nil {
		r.f = nil
		return err
	}
	r.f = nil
	if err := os.Rename(r.path, r.path+".1"); err != nil {
		return fmt.Errorf("rotating %s: %w", r.path, err)
	}
	return r.open()
}

// Close closes the current file.
func (r *RotatingFile) Close() error {
	if r.f == nil {
		return nil
	}
	return r.f.Close()
}

// maxLine is the longest stderr line logged whole; longer ones are cut.
const maxLine = 64 << 10

// readLines calls line for each line of r, cutting lines longer than
// maxLine (the rest of such a line is skipped), until r ends or fails.
// Unlike bufio.Scanner it never stops at a long line, so QEMU can never
// block on a full stderr pipe.
func readLines(r io.Reader, line func(string)) {
	br := bufio.NewReaderSize(r, maxLine)
	skipping := false
	for {
		b, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !skipping {
				line(string(b) + " …[cut]")
			}
			skipping = true
			continue
		case len(b) > 0 && !skipping:
			line(string(trimEOL(b)))
		}
		skipping = false
		if err != nil {
			return
		}
	}
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}
