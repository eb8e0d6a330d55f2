package ipmi

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// client is a minimal RMCP+ console for tests that need what ipmitool
// will not do: replays, forged packets, chosen algorithms.
type client struct {
	t         testing.TB
	conn      *net.UDPConn
	suite     suite
	keys      *sessionKeys
	consoleID uint32
	bmcID     uint32
	seq       uint32
	rqSeq     byte
	last      []byte // the last signed request sent
}

func (b *bmc) dial() *client {
	b.t.Helper()
	conn, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: b.port})
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { conn.Close() })
	return &client{t: b.t, conn: conn, suite: suites[0], consoleID: 0xa0a2a3a4}
}

// exchange sends a datagram (none when b is nil) and returns the next
// answer, or nil when none comes within wait.
func (c *client) exchange(b []byte, wait time.Duration) []byte {
	c.t.Helper()
	if b != nil {
		if _, err := c.conn.Write(b); err != nil {
			c.t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	c.conn.SetReadDeadline(time.Now().Add(wait))
	n, err := c.conn.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// payloadOf parses an answer and returns its (decrypted) payload.
func (c *client) payloadOf(b []byte) []byte {
	c.t.Helper()
	if b == nil {
		return nil
	}
	p, err := parsePacket(b)
	if err != nil {
		c.t.Fatalf("answer does not parse: %x", b)
	}
	if !p.signed {
		return p.payload
	}
	if c.keys == nil || !p.checkTrailer(c.keys) {
		c.t.Fatalf("answer's AuthCode does not verify: %x", b)
	}
	plain, err := c.keys.decrypt(p.payload)
	if err != nil {
		c.t.Fatal(err)
	}
	return plain
}

func openRequest(consoleID uint32, priv, auth, integ, conf byte) []byte {
	b := []byte{1, priv, 0, 0}
	b = binary.LittleEndian.AppendUint32(b, consoleID)
	b = append(b, 0, 0, 0, 8, auth, 0, 0, 0, 1, 0, 0, 8, integ, 0, 0, 0, 2, 0, 0, 8, conf, 0, 0, 0)
	return v20Packet(payloadOpenReq, 0, 0, b, nil, [16]byte{})
}

// open sends Open Session for the client's suite; it returns the status.
func (c *client) open() byte {
	c.t.Helper()
	resp := c.payloadOf(c.exchange(openRequest(c.consoleID, 0, c.suite.auth, c.suite.integrity, c.suite.conf), time.Second))
	if len(resp) < 8 {
		c.t.Fatalf("Open Session answer %x", resp)
	}
	if resp[1] == rsOK {
		c.bmcID = binary.LittleEndian.Uint32(resp[8:])
	}
	return resp[1]
}

// login runs Open Session and RAKP 1-4; it returns the status of the
// first message that failed (0 when the session is active) and the RAKP 2
// payload.
func (c *client) login(user, password string) (status byte, rakp2 []byte) {
	c.t.Helper()
	if st := c.open(); st != rsOK {
		return st, nil
	}
	r, m2 := c.rakp1(user, password)
	if m2[1] != rsOK {
		return m2[1], m2
	}
	copy(r.bmcRand[:], m2[8:24])
	copy(r.guid[:], m2[24:40])
	m3 := []byte{3, 0, 0, 0}
	m3 = binary.LittleEndian.AppendUint32(m3, c.bmcID)
	m3 = append(m3, r.rakp3Code()...)
	m4 := c.payloadOf(c.exchange(v20Packet(payloadRAKP3, 0, 0, m3, nil, [16]byte{}), time.Second))
	if len(m4) < 8 {
		c.t.Fatalf("RAKP 4 %x", m4)
	}
	if m4[1] != rsOK {
		return m4[1], m2
	}
	sik := r.sik()
	if string(m4[8:]) != string(r.rakp4Code(sik)) {
		c.t.Fatalf("RAKP 4 check value %x, want %x", m4[8:], r.rakp4Code(sik))
	}
	keys, err := newSessionKeys(c.suite, sik)
	if err != nil {
		c.t.Fatal(err)
	}
	c.keys = keys
	return rsOK, m2
}

// rakp1 sends RAKP 1 for the open session and returns the RAKP 2 payload.
func (c *client) rakp1(user, password string) (*rakp, []byte) {
	c.t.Helper()
	r := &rakp{suite: c.suite, consoleID: c.consoleID, bmcID: c.bmcID, role: 0x14, user: []byte(user), password: []byte(password)}
	rand.Read(r.consoleRand[:])
	m1 := []byte{2, 0, 0, 0}
	m1 = binary.LittleEndian.AppendUint32(m1, c.bmcID)
	m1 = append(m1, r.consoleRand[:]...)
	m1 = append(m1, r.role, 0, 0, byte(len(user)))
	m1 = append(m1, user...)
	m2 := c.payloadOf(c.exchange(v20Packet(payloadRAKP1, 0, 0, m1, nil, [16]byte{}), time.Second))
	if len(m2) < 8 {
		c.t.Fatalf("RAKP 2 %x", m2)
	}
	return r, m2
}

func request(rqSeq, netFn, cmd byte, data ...byte) []byte {
	b := []byte{0x20, netFn << 2}
	b = append(b, checksum(b))
	start := len(b)
	b = append(b, 0x81, rqSeq<<2, cmd)
	b = append(b, data...)
	return append(b, checksum(b[start:]))
}

// signed builds the next request of the session.
func (c *client) signed(netFn, cmd byte, data ...byte) []byte {
	c.seq++
	c.rqSeq = (c.rqSeq + 1) & 0x3f
	var iv [16]byte
	rand.Read(iv[:])
	c.last = v20Packet(payloadIPMI, c.bmcID, c.seq, request(c.rqSeq, netFn, cmd, data...), c.keys, iv)
	return c.last
}

// command runs one command in the session; ok is false without an answer.
func (c *client) command(netFn, cmd byte, data ...byte) (cc byte, out []byte, ok bool) {
	c.t.Helper()
	return c.answer(c.exchange(c.signed(netFn, cmd, data...), time.Second))
}

func (c *client) answer(b []byte) (cc byte, out []byte, ok bool) {
	c.t.Helper()
	p := c.payloadOf(b)
	if p == nil {
		return 0, nil, false
	}
	if len(p) < 8 {
		c.t.Fatalf("short response %x", p)
	}
	return p[6], p[7 : len(p)-1], true
}

// BenchmarkSession is one ipmitool-like use of the BMC over loopback UDP:
// Open Session, RAKP 1-4 (suite 17), Get Chassis Status, Close Session.
func BenchmarkSession(b *testing.B) {
	bm := startBMC(b)
	for b.Loop() {
		c := bm.dial()
		c.suite = suites[1]
		if st, _ := c.login(testUser, testPassword); st != rsOK {
			b.Fatalf("login: %#x", st)
		}
		if cc, _, ok := c.command(netFnChassis, 0x01); !ok || cc != ccOK {
			b.Fatalf("chassis status: %#x %v", cc, ok)
		}
		id := binary.LittleEndian.AppendUint32(nil, c.bmcID)
		if cc, _, ok := c.command(netFnApp, 0x3c, id...); !ok || cc != ccOK {
			b.Fatalf("close: %#x %v", cc, ok)
		}
		c.conn.Close()
	}
}
