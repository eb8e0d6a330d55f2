package ipmi

import (
	"net/netip"
	"time"
)

// Privilege levels (IPMI v2.0, 6.8).
const (
	privCallback = 1
	privUser     = 2
	privOperator = 3
	privAdmin    = 4
)

// session is one RMCP+ session, from Open Session to Close Session or its
// idle timeout. The server's mutex guards every field.
type session struct {
	bmcID, consoleID uint32
	addr             netip.AddrPort // the console; packets from elsewhere are dropped
	suite            suite
	maxPriv, priv    byte
	rakp             *rakp        // between Open Session and RAKP 3
	keys             *sessionKeys // once active
	user             string
	used             time.Time
	window           seqWindow
	outSeq           uint32
	// busy is set while a command runs; inflight is its request, so a
	// console's retry of it is not run twice. last and lastResp are the
	// newest finished request and its answer, sent again to a retry.
	busy     bool
	inflight string
	last     string
	lastResp []byte
}

func (s *session) active() bool { return s.keys != nil }

// seqWindow refuses replayed or stale session sequence numbers: a number
// is taken once, and only within 16 of the highest taken so far.
type seqWindow struct {
	started bool
	high    uint32
	seen    uint32 // bit i: high-(i+1) was taken
}

const seqSpan = 16

func (w *seqWindow) accept(seq uint32) bool {
	switch {
	case seq == 0:
		return false
	case !w.started:
		w.started, w.high = true, seq
	case seq > w.high:
		d := seq - w.high
		if d > seqSpan {
			return false
		}
		w.seen = w.seen<<d | 1<<(d-1)
		w.high = seq
	case seq == w.high:
		return false
	default:
		d := w.high - seq
		if d > seqSpan || w.seen&(1<<(d-1)) != 0 {
			return false
		}
		w.seen |= 1 << (d - 1)
	}
	return true
}

// limiter counts unfinished or failed logins per source address: each
// RAKP 1 is a strike, a good RAKP 3 clears them. After maxStrikes within
// strikeWindow the address may not open sessions for lockout. This slows
// password guessing and the harvest of RAKP 2 hashes (docs/ipmi.md).
type limiter struct {
	by  map[netip.Addr]*strikes
	now func() time.Time
}

type strikes struct {
	n           int
	last, until time.Time
}

const (
	maxStrikes   = 5
	strikeWindow = 5 * time.Minute
	lockout      = time.Minute
	maxTracked   = 4096
)

func (l *limiter) locked(ip netip.Addr) bool {
	s := l.by[ip]
	return s != nil && l.now().Before(s.until)
}

// strike counts one attempt and says whether the address is now locked.
func (l *limiter) strike(ip netip.Addr) bool {
	now := l.now()
	s := l.by[ip]
	if s == nil {
		if len(l.by) >= maxTracked {
			l.prune(now)
		}
		s = &strikes{}
		l.by[ip] = s
	}
	if now.Sub(s.last) > strikeWindow {
		s.n = 0
	}
	s.n++
	s.last = now
	if s.n >= maxStrikes {
		s.until = now.Add(lockout)
		s.n = 0
		return true
	}
	return false
}

func (l *limiter) clear(ip netip.Addr) { delete(l.by, ip) }

// prune forgets addresses that are neither locked nor recent; if every
// one is, it forgets one anyway, so the map stays bounded.
func (l *limiter) prune(now time.Time) {
	for ip, s := range l.by {
		if now.Sub(s.last) > strikeWindow && !now.Before(s.until) {
			delete(l.by, ip)
		}
	}
	for ip := range l.by {
		if len(l.by) < maxTracked {
			break
		}
		delete(l.by, ip)
	}
}
