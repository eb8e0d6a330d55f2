// Package ipmi is vmrunner's IPMI BMC: IPMI v2.0 over RMCP+ (ipmitool's
// lanplus interface) for one VM, enough for ipmitool, Ironic's ipmi
// driver and MAAS to power it, reset it and choose its boot device. Only
// authenticated, signed and encrypted sessions are offered (cipher suites 3
// and 17); IPMI 1.5 sessions never are. It sees the VM only through
// controller.API, so it is tested with a fake.
package ipmi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/controller"
)

// Options configure the BMC.
type Options struct {
	Username, Password string
	SystemID           string // names the system in log lines
	Version            string // vmrunner's version, the firmware revision of Get Device ID
	Log                *zap.Logger
	// SessionTimeout ends a session idle this long; 0 means 60 s.
	SessionTimeout time.Duration
	// MaxSessions caps open sessions; 0 means 8.
	MaxSessions int
	// Now is the clock (tests move it); nil means time.Now.
	Now func() time.Time
}

// Server answers IPMI datagrams. Its zero value is not usable; see New.
type Server struct {
	api  controller.API
	opt  Options
	log  *zap.Logger
	user []byte
	pass []byte

	mu       sync.Mutex
	sessions map[uint32]*session
	limit    limiter
	boot     bootParams

	// send puts a datagram on the wire; Serve sets it to the socket.
	send func(to netip.AddrPort, b []byte)
	ctx  context.Context
	wg   sync.WaitGroup
}

// New returns the BMC; Serve puts it on a UDP socket. It never logs the
// password or key material.
func New(api controller.API, opt Options) *Server {
	if opt.Log == nil {
		opt.Log = zap.NewNop()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.SessionTimeout <= 0 {
		opt.SessionTimeout = 60 * time.Second
	}
	if opt.MaxSessions <= 0 {
		opt.MaxSessions = 8
	}
	return &Server{
		api: api, opt: opt, log: opt.Log,
		user: []byte(opt.Username), pass: []byte(opt.Password),
		sessions: map[uint32]*session{},
		limit:    limiter{by: map[netip.Addr]*strikes{}, now: opt.Now},
		send:     func(netip.AddrPort, []byte) {},
		ctx:      context.Background(),
	}
}

// Serve answers datagrams on conn until ctx ends, then closes conn and
// waits for running commands.
func (s *Server) Serve(ctx context.Context, conn *net.UDPConn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = ctx
	s.send = func(to netip.AddrPort, b []byte) {
		if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
			s.log.Debug("ipmi send", zap.Error(err))
		}
	}
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				s.mu.Lock()
				s.expire()
				s.mu.Unlock()
			}
		}
	}()
	buf := make([]byte, maxPacket+1)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			s.wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n > maxPacket {
			continue
		}
		s.handle(from, append([]byte(nil), buf[:n]...))
	}
}

// handle answers one datagram, or drops it: nothing a packet holds makes
// it panic (FuzzPacket).
func (s *Server) handle(from netip.AddrPort, b []byte) {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	p, err := parsePacket(b)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	switch {
	case p.v15:
		s.sessionless(from, p)
	case p.encrypted || p.signed:
		s.inSession(from, p)
	case p.ptype == payloadIPMI && p.sessionID == 0:
		s.sessionless(from, p)
	case p.ptype == payloadOpenReq:
		s.openSession(from, p.payload)
	case p.ptype == payloadRAKP1:
		s.rakp1(from, p.payload)
	case p.ptype == payloadRAKP3:
		s.rakp3(from, p.payload)
	}
}

// pendingTimeout ends a login that has not finished RAKP: a console
// does it in milliseconds.
const pendingTimeout = 10 * time.Second

// expire ends idle sessions and unfinished logins; the caller holds mu.
func (s *Server) expire() {
	now := s.opt.Now()
	for id, ss := range s.sessions {
		limit := s.opt.SessionTimeout
		if !ss.active() {
			limit = min(limit, pendingTimeout)
		}
		if now.Sub(ss.used) <= limit || ss.busy {
			continue
		}
		delete(s.sessions, id)
		switch {
		case ss.active():
			s.log.Info("ipmi session expired", zap.String("from", ss.addr.String()), zap.Uint32("session", id))
		case ss.rakp != nil:
			// ipmitool with a wrong password stops here: it checks
			// RAKP 2 and sends no RAKP 3.
			s.log.Warn("ipmi login refused", zap.String("from", ss.addr.String()), zap.String("user", ss.user),
				zap.String("reason", "no RAKP 3: the console holds another password, or gave up"))
		}
	}
}

// sessionless answers the few commands allowed before a session: in the
// format the request came in.
func (s *Server) sessionless(from netip.AddrPort, p *packet) {
	m, err := parseMessage(p.payload)
	if err != nil {
		return
	}
	c, known := commands[cmdKey(m.netFn, m.cmd)]
	var resp []byte
	switch {
	case !known:
		resp = m.response(ccInvalidCommand)
	case !c.sessionless:
		resp = m.response(ccInsufficientPrivilege)
	default:
		data, cc := c.run(s, &call{msg: m})
		resp = m.response(cc, data...)
	}
	if p.v15 {
		s.send(from, v15Packet(resp))
		return
	}
	s.send(from, v20Packet(payloadIPMI, 0, 0, resp, nil, [16]byte{}))
}

// RMCP+ status codes (IPMI v2.0, table 13-15).
const (
	rsOK                  = 0x00
	rsNoResources         = 0x01
	rsInvalidSessionID    = 0x02
	rsInvalidRole         = 0x09
	rsUnauthorizedRole    = 0x0a
	rsInvalidNameLength   = 0x0c
	rsUnauthorizedName    = 0x0d
	rsInvalidIntegrity    = 0x0f
	rsNoCipherSuite       = 0x11
	rsIllegalParameter    = 0x12
	openRequestLen        = 32
	rakp1MinLen           = 28
	rakp3MinLen           = 8
	maxUserLen            = 16
	algorithmRecordLen    = 8
	defaultRequestedLevel = 0
)

func randomID() uint32 {
	var b [4]byte
	for {
		rand.Read(b[:])
		if v := binary.LittleEndian.Uint32(b[:]); v != 0 {
			return v
		}
	}
}

func (s *Server) openSession(from netip.AddrPort, b []byte) {
	if len(b) < openRequestLen {
		return
	}
	tag, consoleID := b[0], binary.LittleEndian.Uint32(b[4:])
	fail := func(status byte) {
		resp := []byte{tag, status, 0, 0}
		resp = binary.LittleEndian.AppendUint32(resp, consoleID)
		s.send(from, v20Packet(payloadOpenResp, 0, 0, resp, nil, [16]byte{}))
	}
	if consoleID == 0 {
		fail(rsInvalidSessionID)
		return
	}
	if s.limit.locked(from.Addr()) {
		s.log.Warn("ipmi open session refused: too many failed logins from this address", zap.String("from", from.String()))
		fail(rsNoResources)
		return
	}
	// Each algorithm record: type, 2 reserved, length 8, algorithm, 3 reserved.
	rec := func(at int, typ byte) (byte, bool) {
		r := b[at : at+algorithmRecordLen]
		return r[4] & 0x3f, r[0] == typ && r[3] == algorithmRecordLen
	}
	auth, ok1 := rec(8, 0)
	integ, ok2 := rec(16, 1)
	conf, ok3 := rec(24, 2)
	if !ok1 || !ok2 || !ok3 {
		fail(rsIllegalParameter)
		return
	}
	su, ok := suiteFor(auth, integ, conf)
	if !ok {
		s.log.Warn("ipmi open session refused: cipher suite not offered (only 3 and 17)", zap.String("from", from.String()),
			zap.Uint8("auth", auth), zap.Uint8("integrity", integ), zap.Uint8("confidentiality", conf))
		fail(rsNoCipherSuite)
		return
	}
	maxPriv := b[1] & 0x0f
	switch {
	case maxPriv == defaultRequestedLevel:
		maxPriv = privAdmin
	case maxPriv > privAdmin:
		fail(rsInvalidRole)
		return
	}
	if len(s.sessions) >= s.opt.MaxSessions && !s.evictPending() {
		s.log.Warn("ipmi open session refused: every session is in use", zap.String("from", from.String()), zap.Int("max", s.opt.MaxSessions))
		fail(rsNoResources)
		return
	}
	id := randomID()
	for s.sessions[id] != nil {
		id = randomID()
	}
	s.sessions[id] = &session{bmcID: id, consoleID: consoleID, addr: from, suite: su, maxPriv: maxPriv, used: s.opt.Now()}
	resp := []byte{tag, rsOK, maxPriv, 0}
	resp = binary.LittleEndian.AppendUint32(resp, consoleID)
	resp = binary.LittleEndian.AppendUint32(resp, id)
	resp = append(resp, 0, 0, 0, 8, su.auth, 0, 0, 0)
	resp = append(resp, 1, 0, 0, 8, su.integrity, 0, 0, 0)
	resp = append(resp, 2, 0, 0, 8, su.conf, 0, 0, 0)
	s.send(from, v20Packet(payloadOpenResp, 0, 0, resp, nil, [16]byte{}))
}

// evictPending drops the oldest session that has not finished RAKP, so a
// flood of Open Session requests cannot lock users out; false when every
// session is active.
func (s *Server) evictPending() bool {
	var oldest *session
	for _, ss := range s.sessions {
		if !ss.active() && (oldest == nil || ss.used.Before(oldest.used)) {
			oldest = ss
		}
	}
	if oldest == nil {
		return false
	}
	delete(s.sessions, oldest.bmcID)
	return true
}

// pending finds the session a RAKP message names, from the console that
// opened it.
func (s *Server) pending(from netip.AddrPort, id uint32) *session {
	ss := s.sessions[id]
	if ss == nil || ss.addr != from || ss.active() {
		return nil
	}
	return ss
}

func (s *Server) rakp1(from netip.AddrPort, b []byte) {
	if len(b) < rakp1MinLen {
		return
	}
	tag, id := b[0], binary.LittleEndian.Uint32(b[4:])
	ss := s.pending(from, id)
	if ss == nil {
		return
	}
	fail := func(status byte, why string) {
		delete(s.sessions, id)
		resp := []byte{tag, status, 0, 0}
		resp = binary.LittleEndian.AppendUint32(resp, ss.consoleID)
		s.send(from, v20Packet(payloadRAKP2, 0, 0, resp, nil, [16]byte{}))
		s.log.Warn("ipmi login refused", zap.String("from", from.String()), zap.String("reason", why))
	}
	if s.limit.strike(from.Addr()) {
		s.log.Warn("ipmi: too many logins from this address, locked out", zap.String("from", from.String()), zap.Duration("for", lockout))
	}
	r := &rakp{suite: ss.suite, consoleID: ss.consoleID, bmcID: id, role: b[24], password: s.pass}
	copy(r.consoleRand[:], b[8:24])
	n := int(b[27])
	if n > maxUserLen || len(b) < rakp1MinLen+n {
		fail(rsInvalidNameLength, "user name too long")
		return
	}
	r.user = append([]byte(nil), b[28:28+n]...)
	if priv := r.role & 0x0f; priv == 0 || priv > privAdmin {
		fail(rsInvalidRole, "invalid role")
		return
	} else if priv > ss.maxPriv {
		fail(rsUnauthorizedRole, "role above the session's maximum")
		return
	}
	if subtle.ConstantTimeCompare(r.user, s.user) != 1 {
		fail(rsUnauthorizedName, "unknown user name")
		return
	}
	rand.Read(r.bmcRand[:])
	r.guid = s.guid()
	ss.rakp = r
	ss.user = string(r.user)
	ss.used = s.opt.Now()
	resp := []byte{tag, rsOK, 0, 0}
	resp = binary.LittleEndian.AppendUint32(resp, ss.consoleID)
	resp = append(resp, r.bmcRand[:]...)
	resp = append(resp, r.guid[:]...)
	resp = append(resp, r.rakp2Code()...)
	s.send(from, v20Packet(payloadRAKP2, 0, 0, resp, nil, [16]byte{}))
}

func (s *Server) rakp3(from netip.AddrPort, b []byte) {
	if len(b) < rakp3MinLen {
		return
	}
	tag, status, id := b[0], b[1], binary.LittleEndian.Uint32(b[4:])
	ss := s.pending(from, id)
	if ss == nil || ss.rakp == nil {
		return
	}
	r := ss.rakp
	reply := func(status byte, tail []byte) {
		resp := []byte{tag, status, 0, 0}
		resp = binary.LittleEndian.AppendUint32(resp, ss.consoleID)
		s.send(from, v20Packet(payloadRAKP4, 0, 0, append(resp, tail...), nil, [16]byte{}))
	}
	if status != rsOK {
		// The console refused our RAKP 2: it holds another password.
		delete(s.sessions, id)
		s.log.Warn("ipmi login abandoned by the console", zap.String("from", from.String()), zap.Uint8("status", status))
		return
	}
	if subtle.ConstantTimeCompare(b[8:], r.rakp3Code()) != 1 {
		delete(s.sessions, id)
		reply(rsInvalidIntegrity, nil)
		s.log.Warn("ipmi login refused", zap.String("from", from.String()), zap.String("reason", "wrong password"))
		return
	}
	sik := r.sik()
	keys, err := newSessionKeys(r.suite, sik)
	if err != nil {
		delete(s.sessions, id)
		return
	}
	s.limit.clear(from.Addr())
	ss.keys, ss.rakp = keys, nil
	ss.priv = min(privUser, ss.maxPriv)
	ss.used = s.opt.Now()
	reply(rsOK, r.rakp4Code(sik))
	s.log.Info("ipmi session opened", zap.String("from", from.String()), zap.String("user", ss.user),
		zap.Uint8("cipher_suite", ss.suite.id), zap.Uint32("session", id), zap.String("system", s.opt.SystemID))
}

// guid is the system's GUID (the VM's UUID) in IPMI's byte order: the
// RFC 4122 bytes reversed.
func (s *Server) guid() [16]byte {
	var g [16]byte
	u := parseUUID(s.api.Status().UUID)
	for i := range u {
		g[15-i] = u[i]
	}
	return g
}

func parseUUID(u string) [16]byte {
	var out [16]byte
	n := 0
	var hi byte
	half := false
	for i := 0; i < len(u) && n < 16; i++ {
		c := u[i]
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			continue
		}
		if half {
			out[n] = hi<<4 | v
			n++
		} else {
			hi = v
		}
		half = !half
	}
	return out
}

// inSession checks a signed packet of an active session and runs its
// command: integrity first, then the sequence number, then decryption.
func (s *Server) inSession(from netip.AddrPort, p *packet) {
	ss := s.sessions[p.sessionID]
	if ss == nil || !ss.active() || ss.addr != from || p.ptype != payloadIPMI || !p.encrypted || !p.signed {
		return
	}
	if !p.checkTrailer(ss.keys) || !ss.window.accept(p.seq) {
		return
	}
	plain, err := ss.keys.decrypt(p.payload)
	if err != nil {
		return
	}
	m, err := parseMessage(plain)
	if err != nil {
		return
	}
	ss.used = s.opt.Now()
	key := string([]byte{m.netFn, m.cmd, m.rqSeq, m.rsLUN}) + string(m.data)
	switch {
	case ss.busy:
		return // its answer comes when the running command ends
	case key == ss.last && ss.lastResp != nil:
		s.reply(ss, ss.lastResp) // a retry: answered, not run again
		return
	}
	ss.busy, ss.inflight = true, key
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		resp, closeAfter := s.runCommand(ss, m)
		s.mu.Lock()
		defer s.mu.Unlock()
		ss.busy, ss.last, ss.lastResp = false, key, resp
		if s.sessions[ss.bmcID] != ss {
			return
		}
		s.reply(ss, resp)
		if closeAfter {
			delete(s.sessions, ss.bmcID)
			s.log.Info("ipmi session closed", zap.String("from", ss.addr.String()), zap.Uint32("session", ss.bmcID))
		}
	}()
}

// reply sends an IPMI response in the session; the caller holds mu.
func (s *Server) reply(ss *session, msg []byte) {
	ss.outSeq++
	if ss.outSeq == 0 {
		ss.outSeq = 1
	}
	var iv [16]byte
	rand.Read(iv[:])
	s.send(ss.addr, v20Packet(payloadIPMI, ss.consoleID, ss.outSeq, msg, ss.keys, iv))
}

// runCommand runs m for the session outside the lock.
func (s *Server) runCommand(ss *session, m message) (resp []byte, closeAfter bool) {
	c, known := commands[cmdKey(m.netFn, m.cmd)]
	if !known {
		s.logCommand(ss, m, "unknown", ccInvalidCommand, false)
		return m.response(ccInvalidCommand), false
	}
	s.mu.Lock()
	priv := ss.priv
	s.mu.Unlock()
	if priv < c.priv {
		s.logCommand(ss, m, c.name, ccInsufficientPrivilege, true)
		return m.response(ccInsufficientPrivilege), false
	}
	ctx, cancel := context.WithTimeout(s.ctx, commandTimeout)
	defer cancel()
	cl := &call{ctx: ctx, msg: m, sess: ss}
	data, cc := c.run(s, cl)
	s.logCommand(ss, m, c.name, cc, c.changes)
	return m.response(cc, data...), cl.closeSession && cc == ccOK
}

// logCommand logs what changes the VM (or was refused for lack of
// privilege) at info level, reads and unknown commands (ipmitool probes
// for PICMG and VITA extensions each time) at debug level.
func (s *Server) logCommand(ss *session, m message, name string, cc byte, changes bool) {
	level := zap.DebugLevel
	if changes {
		level = zap.InfoLevel
	}
	s.log.Log(level, "ipmi command", zap.String("from", ss.addr.String()), zap.Uint32("session", ss.bmcID),
		zap.String("command", name), zap.Uint8("netfn", m.netFn), zap.Uint8("cmd", m.cmd), zap.Uint8("completion", cc))
}

// errCode maps the controller's errors to completion codes.
func errCode(err error) byte {
	switch {
	case err == nil:
		return ccOK
	case errors.Is(err, controller.ErrState):
		return ccNotInThisState
	case errors.Is(err, controller.ErrInvalid):
		return ccInvalidData
	case errors.Is(err, context.DeadlineExceeded):
		return ccTimeout
	}
	return ccUnspecified
}
