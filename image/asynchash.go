package image

import (
	"hash"
	"sync"
)

// asyncHash feeds a hash on its own goroutine, so that hashing overlaps
// reading the network and writing the disk instead of adding to them.
// Buffers come from buffer() and go back to it once hashed.
type asyncHash struct {
	h       hash.Hash
	work    chan []byte
	free    chan []byte
	pending sync.WaitGroup
}

func newAsyncHash(h hash.Hash, buffers, size int) *asyncHash {
	a := &asyncHash{h: h, work: make(chan []byte, buffers), free: make(chan []byte, buffers)}
	for range buffers {
		a.free <- make([]byte, size)
	}
	go func() {
		for b := range a.work {
			a.h.Write(b)
			a.free <- b[:cap(b)]
			a.pending.Done()
		}
	}()
	return a
}

func (a *asyncHash) buffer() []byte { return <-a.free }

// release returns a buffer that was not written.
func (a *asyncHash) release(b []byte) { a.free <- b[:cap(b)] }

// write queues b, a slice of a buffer from buffer(), for hashing.
func (a *asyncHash) write(b []byte) {
	a.pending.Add(1)
	a.work <- b
}

// wait returns once everything queued is hashed; the hash may then be
// read or reset.
func (a *asyncHash) wait() hash.Hash {
	a.pending.Wait()
	return a.h
}

func (a *asyncHash) stop() { close(a.work) }
