package controller

import (
	"errors"
	"io"
	"sync"
)

// viewerBuffer is how many console writes a viewer may fall behind before
// it is detached: the guest's console never waits for a viewer.
const viewerBuffer = 1024

// serialHub fans the guest's serial output out to every attached viewer
// and passes their keystrokes to the running QEMU. It outlives QEMU runs.
type serialHub struct {
	mu      sync.Mutex
	viewers map[*viewer]struct{}
	stdin   io.Writer // the running QEMU's console input; nil when off
}

func newSerialHub() *serialHub {
	return &serialHub{viewers: map[*viewer]struct{}{}}
}

// Write is the guest's output.
func (h *serialHub) Write(p []byte) (int, error) {
	h.mu.Lock()
	for v := range h.viewers {
		select {
		case v.out <- append([]byte(nil), p...):
		default:
			delete(h.viewers, v)
			v.closeOut()
		}
	}
	h.mu.Unlock()
	return len(p), nil
}

func (h *serialHub) setInput(w io.Writer) {
	h.mu.Lock()
	h.stdin = w
	h.mu.Unlock()
}

// typeIn writes keystrokes to the running QEMU; without one they are lost.
func (h *serialHub) typeIn(p []byte) (int, error) {
	h.mu.Lock()
	w := h.stdin
	h.mu.Unlock()
	if w == nil {
		return len(p), nil
	}
	if _, err := w.Write(p); err != nil {
		return len(p), nil // QEMU is ending; the next run gets the next keys
	}
	return len(p), nil
}

type inputWriter struct{ h *serialHub }

func (w inputWriter) Write(p []byte) (int, error) { return w.h.typeIn(p) }

func (h *serialHub) input() io.Writer { return inputWriter{h} }

func (h *serialHub) attach() *viewer {
	v := &viewer{h: h, out: make(chan []byte, viewerBuffer), closed: make(chan struct{})}
	h.mu.Lock()
	h.viewers[v] = struct{}{}
	h.mu.Unlock()
	return v
}

// viewer is one attached console: reads are the guest's output from the
// moment of attaching, writes are typed into the guest.
type viewer struct {
	h       *serialHub
	out     chan []byte
	pending []byte
	once    sync.Once
	closed  chan struct{}
}

var errDetached = errors.New("console detached")

func (v *viewer) Read(p []byte) (int, error) {
	if len(v.pending) == 0 {
		select {
		case b, ok := <-v.out:
			if !ok {
				return 0, io.EOF
			}
			v.pending = b
		case <-v.closed:
			return 0, io.EOF
		}
	}
	n := copy(p, v.pending)
	v.pending = v.pending[n:]
	return n, nil
}

func (v *viewer) Write(p []byte) (int, error) {
	select {
	case <-v.closed:
		return 0, errDetached
	default:
	}
	return v.h.typeIn(p)
}

// closeOut ends the output stream (the hub holds its lock).
func (v *viewer) closeOut() { close(v.out) }

func (v *viewer) Close() error {
	v.once.Do(func() {
		close(v.closed)
		v.h.mu.Lock()
		delete(v.h.viewers, v)
		v.h.mu.Unlock()
	})
	return nil
}
