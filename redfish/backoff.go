package redfish

import (
	"context"
	"net"
	"sync"
	"time"
)

// backoff slows down password guessing per client address. A client's
// first few failures cost nothing (a mistyped password); after that each
// password check of that client, right or wrong, waits for its turn, and
// the turns are spaced by a delay that doubles with every further failure
// up to a cap. Turns are handed out in order and, once a client has
// failed, its checks under way count as failures, so parallel requests get
// no more guesses than sequential ones; a client that would wait longer
// than the queue allows is refused at once (503 with Retry-After). Other
// clients are never delayed, and session tokens are never checked here:
// only a shared address shares the back-off. A success or a quiet spell
// clears a client's record.
type backoff struct {
	mu      sync.Mutex
	clients map[string]*strikes
	now     func() time.Time
	free    int           // failures without any delay
	first   time.Duration // delay after the first failure past free
	max     time.Duration // the longest delay between two checks
	queue   time.Duration // a client waiting longer than this is refused
	forget  time.Duration // a client this long without failure is forgotten
	limit   int           // clients remembered at once
}

type strikes struct {
	fails    int
	inflight int       // checks admitted and not yet done
	last     time.Time // the latest failure
	next     time.Time // when the client's next check may run
}

func newBackoff(now func() time.Time) *backoff {
	return &backoff{clients: map[string]*strikes{}, now: now, free: 5, first: 250 * time.Millisecond,
		max: 4 * time.Second, queue: 10 * time.Second, forget: 10 * time.Minute, limit: 10000}
}

// turn reserves the client's next password check and says how long it
// must wait for it; ok is false when that is more than the queue allows
// (nothing is reserved then). Once the client has failed, its checks still
// under way count as failures here, so a burst of parallel guesses gets no
// more free ones than a sequence; a client that never failed is never
// delayed, however many requests it has under way. Each admitted check
// ends in failed, succeeded or abandoned.
func (b *backoff) turn(client string) (wait time.Duration, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	st := b.clients[client]
	if st != nil && st.inflight == 0 && now.Sub(st.last) > b.forget {
		delete(b.clients, client)
		st = nil
	}
	if st == nil {
		if len(b.clients) >= b.limit {
			b.evict(now)
		}
		st = &strikes{}
		b.clients[client] = st
	}
	n := st.fails
	if n > 0 {
		n += st.inflight
	}
	if n >= b.free {
		at := st.next
		if at.Before(now) {
			at = now
		}
		if wait = at.Sub(now); wait > b.queue {
			return wait, false
		}
		st.next = at.Add(b.delay(n))
	}
	st.inflight++
	return wait, true
}

// delay spaces the checks of a client with fails failures.
func (b *backoff) delay(fails int) time.Duration {
	n := min(fails-b.free, 30)
	return min(b.first<<n, b.max)
}

// failed ends a check with a wrong password and returns the client's
// failures.
func (b *backoff) failed(client string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.clients[client]
	if st == nil {
		// A success of the same client cleared the record meanwhile.
		st = &strikes{}
		b.clients[client] = st
	}
	if st.inflight > 0 {
		st.inflight--
	}
	st.fails++
	st.last = b.now()
	return st.fails
}

// succeeded ends a check with the right password and clears the client's
// record: whoever is there knows the password.
func (b *backoff) succeeded(client string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.clients, client)
}

// abandoned ends a check that never ran (the client hung up waiting).
func (b *backoff) abandoned(client string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.clients[client]; st != nil && st.inflight > 0 {
		st.inflight--
	}
}

// evict makes room: forgotten clients go, or else the one quiet longest;
// clients with checks under way stay. The caller holds mu.
func (b *backoff) evict(now time.Time) {
	var oldest string
	for c, st := range b.clients {
		if st.inflight > 0 {
			continue
		}
		if now.Sub(st.last) > b.forget {
			delete(b.clients, c)
			continue
		}
		if oldest == "" || st.last.Before(b.clients[oldest].last) {
			oldest = c
		}
	}
	if len(b.clients) >= b.limit && oldest != "" {
		delete(b.clients, oldest)
	}
}

// clientKey is the address a client's failures are counted under: its IP
// address, and for IPv6 its /64, which one host can fill with addresses.
func clientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return host
	case ip.To4() != nil:
		return ip.To4().String()
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
