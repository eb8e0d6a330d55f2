package ipmi

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmrunner/vmrunner/controller"
)

// clock is a settable Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func withClock(c *clock) func(*Options) { return func(o *Options) { o.Now = c.Now } }

const noAnswer = 300 * time.Millisecond

func TestSessionlessCommands(t *testing.T) {
	b := startBMC(t)
	c := b.dial()
	// Get Channel Authentication Capabilities in the IPMI 1.5 format, as
	// ipmitool asks first: IPMI 2.0 only, no 1.5 authentication types, no
	// null or anonymous users.
	resp := c.payloadOf(c.exchange(v15Packet(request(1, netFnApp, 0x38, 0x8e, 0x04)), time.Second))
	want := []byte{0x00, lanChannel, 0x80, 0x04, 0x02, 0, 0, 0, 0}
	if len(resp) < 8 || !bytes.Equal(resp[6:len(resp)-1], want) {
		t.Errorf("auth capabilities %x, want data %x", resp, want)
	}
	// The cipher suites, in the 2.0 format with session 0: 3 and 17 only.
	resp = c.payloadOf(c.exchange(v20Packet(payloadIPMI, 0, 0, request(2, netFnApp, 0x54, 0x0e, 0x00, 0x80), nil, [16]byte{}), time.Second))
	want = []byte{0x00, lanChannel, 0xc0, 3, 1, 0x41, 0x81, 0xc0, 17, 3, 0x44, 0x81}
	if len(resp) < 8 || !bytes.Equal(resp[6:len(resp)-1], want) {
		t.Errorf("cipher suites %x, want data %x", resp, want)
	}
	// Anything else needs a session; unknown commands are 0xC1.
	for _, tc := range []struct {
		netFn, cmd, cc byte
	}{{netFnChassis, 0x02, ccInsufficientPrivilege}, {netFnApp, 0x01, ccInsufficientPrivilege}, {netFnApp, 0x39, ccInvalidCommand}, {0x2c, 0x00, ccInvalidCommand}} {
		resp = c.payloadOf(c.exchange(v15Packet(request(3, tc.netFn, tc.cmd, 0x02)), time.Second))
		if len(resp) < 8 || resp[6] != tc.cc {
			t.Errorf("netfn %#x cmd %#x before a session: %x, want completion %#x", tc.netFn, tc.cmd, resp, tc.cc)
		}
	}
	if calls := b.vm.Calls(); len(calls) != 0 {
		t.Errorf("the VM was touched without a session: %q", calls)
	}
}

func TestCipherSuitesRefused(t *testing.T) {
	b := startBMC(t)
	c := b.dial()
	// Suite 0 (nothing), 1 (no integrity, no encryption), 2 (no
	// encryption), and MD5 and RC4 ones: all refused.
	for _, algs := range [][3]byte{{0, 0, 0}, {1, 0, 0}, {1, 1, 0}, {2, 2, 1}, {1, 1, 2}, {3, 4, 0}, {3, 1, 1}} {
		resp := c.payloadOf(c.exchange(openRequest(c.consoleID, 0, algs[0], algs[1], algs[2]), time.Second))
		if len(resp) < 2 || resp[1] != rsNoCipherSuite {
			t.Errorf("algorithms %v: %x, want status no cipher suite match", algs, resp)
		}
	}
	if n := len(b.srv.sessions); n != 0 {
		t.Errorf("%d sessions left by refused requests", n)
	}
}

func TestLoginFailures(t *testing.T) {
	clk := &clock{now: time.Unix(1e9, 0)}
	b := startBMC(t, withClock(clk))
	c := b.dial()
	if st, _ := c.login("root", testPassword); st != rsUnauthorizedName {
		t.Errorf("wrong user: status %#x, want unauthorized name", st)
	}
	c = b.dial()
	st, rakp2 := c.login(testUser, "wrong-password-1")
	if st != rsInvalidIntegrity {
		t.Errorf("wrong password: status %#x, want invalid integrity check value", st)
	}
	if len(rakp2) < 40 {
		t.Fatalf("RAKP 2 %x", rakp2)
	}
	// Neither gave a session.
	if cc, _, ok := c.command(netFnChassis, 0x01); ok {
		t.Errorf("a command after a failed login was answered: %#x", cc)
	}
	// Five logins that do not finish lock the address out for a minute,
	// even with the right password.
	for range 3 {
		b.dial().login(testUser, "wrong-password-2")
	}
	if st, _ := b.dial().login(testUser, testPassword); st != rsNoResources {
		t.Errorf("after 5 failures: status %#x, want insufficient resources (locked out)", st)
	}
	clk.add(lockout + time.Second)
	if st, _ := b.dial().login(testUser, testPassword); st != rsOK {
		t.Errorf("after the lockout: status %#x", st)
	}
	logs := ""
	for _, e := range b.logs.All() {
		logs += fmt.Sprint(e.Message, " ", e.ContextMap(), "\n")
	}
	if strings.Contains(logs, testPassword) || strings.Contains(logs, "wrong-password") {
		t.Errorf("a password is in the log:\n%s", logs)
	}
	if !strings.Contains(logs, "locked out") {
		t.Errorf("the lockout is not logged:\n%s", logs)
	}
	if calls := b.vm.Calls(); len(calls) != 0 {
		t.Errorf("the VM was touched: %q", calls)
	}
}

func TestReplayAndForgery(t *testing.T) {
	b := startBMC(t)
	c := b.dial()
	if st, _ := c.login(testUser, testPassword); st != rsOK {
		t.Fatalf("login: %#x", st)
	}
	if cc, _, ok := c.command(netFnApp, 0x3b, privAdmin); !ok || cc != ccOK {
		t.Fatalf("set privilege: %#x %v", cc, ok)
	}
	if cc, _, ok := c.command(netFnChassis, 0x02, ctlPowerDown); !ok || cc != ccOK {
		t.Fatalf("power down: %#x %v", cc, ok)
	}
	b.vm.set(func(st *controller.Status) { st.Power = controller.Running })
	b.vm.Calls()
	// The same datagram again (a replay): not answered, not run.
	if got := c.exchange(c.last, noAnswer); got != nil {
		t.Errorf("a replayed packet was answered")
	}
	// A packet with a flipped bit anywhere: dropped.
	pkt := c.signed(netFnChassis, 0x02, ctlPowerDown)
	for _, at := range []int{5, 8, 12, 15, 20, len(pkt) - 14, len(pkt) - 1} {
		bad := bytes.Clone(pkt)
		bad[at] ^= 0x01
		if got := c.exchange(bad, noAnswer/3); got != nil {
			t.Errorf("a packet with byte %d flipped was answered", at)
		}
	}
	// The power-down's sequence number again, re-signed by someone
	// holding the keys: still refused, the window remembers it.
	next := c.seq
	c.seq = 1
	if got := c.exchange(c.signed(netFnChassis, 0x02, ctlPowerDown), noAnswer); got != nil {
		t.Errorf("a reused sequence number was answered")
	}
	c.seq = next
	if calls := b.vm.Calls(); len(calls) != 0 {
		t.Errorf("replays reached the VM: %q", calls)
	}
	// A retry (the same request with a new sequence number, as ipmitool
	// retries) gets the answer again without running the command twice.
	if cc, _, ok := c.command(netFnChassis, 0x02, ctlPowerDown); !ok || cc != ccOK {
		t.Fatalf("power down: %#x %v", cc, ok)
	}
	c.rqSeq--
	if cc, _, ok := c.command(netFnChassis, 0x02, ctlPowerDown); !ok || cc != ccOK {
		t.Errorf("a retry was not answered: %#x %v", cc, ok)
	}
	if calls := b.vm.Calls(); len(calls) != 1 {
		t.Errorf("a power down and its retry made the calls %q, want one", calls)
	}
	b.vm.set(func(st *controller.Status) { st.Power = controller.Running })
	// The session still works.
	if cc, data, ok := c.command(netFnChassis, 0x01); !ok || cc != ccOK || data[0]&1 != 1 {
		t.Errorf("chassis status after the attacks: %#x %x %v", cc, data, ok)
	}
}

func TestPrivilegeAndUnknown(t *testing.T) {
	b := startBMC(t)
	c := b.dial()
	if st, _ := c.login(testUser, testPassword); st != rsOK {
		t.Fatalf("login: %#x", st)
	}
	// A session starts at User: it reads, but may not power.
	if cc, _, _ := c.command(netFnChassis, 0x02, ctlPowerDown); cc != ccInsufficientPrivilege {
		t.Errorf("power down as User: %#x, want insufficient privilege", cc)
	}
	if cc, _, _ := c.command(netFnApp, 0x3b, 5); cc != ccInvalidData {
		t.Errorf("privilege OEM: %#x", cc)
	}
	for _, tc := range []struct {
		netFn, cmd byte
		data       []byte
		cc         byte
	}{
		{netFnApp, 0x02, nil, ccInvalidCommand},   // cold reset: not offered
		{0x0a, 0x10, nil, ccInvalidCommand},       // storage
		{0x2c, 0x00, []byte{0}, ccInvalidCommand}, // PICMG
		{netFnChassis, 0x09, []byte{1, 0, 0}, ccParamNotSupported},
	} {
		if cc, _, ok := c.command(tc.netFn, tc.cmd, tc.data...); !ok || cc != tc.cc {
			t.Errorf("netfn %#x cmd %#x %x: %#x, want %#x", tc.netFn, tc.cmd, tc.data, cc, tc.cc)
		}
	}
	if cc, _, _ := c.command(netFnApp, 0x3b, privOperator); cc != ccOK {
		t.Fatalf("set Operator: %#x", cc)
	}
	for _, tc := range []struct {
		cmd  byte
		data []byte
		cc   byte
	}{{0x02, nil, ccDataLength}, {0x02, []byte{9}, ccInvalidData}, {0x08, []byte{5, 0x80}, ccDataLength}, {0x08, []byte{7, 0}, ccParamNotSupported}} {
		if cc, _, ok := c.command(netFnChassis, tc.cmd, tc.data...); !ok || cc != tc.cc {
			t.Errorf("chassis cmd %#x %x: %#x, want %#x", tc.cmd, tc.data, cc, tc.cc)
		}
	}
	// Boot from diagnostics or BIOS setup: refused, nothing changed.
	if cc, _, _ := c.command(netFnChassis, 0x08, 5, 0x80, 0x18, 0, 0, 0); cc != ccInvalidData {
		t.Errorf("boot to BIOS setup: %#x", cc)
	}
	if calls := b.vm.Calls(); len(calls) != 0 {
		t.Errorf("the VM was touched: %q", calls)
	}
}

func TestSessionTimeoutAndCap(t *testing.T) {
	clk := &clock{now: time.Unix(1e9, 0)}
	b := startBMC(t, withClock(clk), func(o *Options) { o.MaxSessions = 3 })
	var cs []*client
	for i := range 3 {
		c := b.dial()
		c.consoleID += uint32(i)
		if st, _ := c.login(testUser, testPassword); st != rsOK {
			t.Fatalf("login %d: %#x", i, st)
		}
		cs = append(cs, c)
	}
	if st := b.dial().open(); st != rsNoResources {
		t.Errorf("a 4th session: status %#x, want insufficient resources", st)
	}
	// Opened but never authenticated sessions make way for new ones.
	clk.add(61 * time.Second)
	if cc, _, ok := cs[0].command(netFnChassis, 0x01); ok {
		t.Errorf("a session idle for 61 s answered: %#x", cc)
	}
	for i := range 3 {
		if st := b.dial().open(); st != rsOK {
			t.Errorf("pending session %d: %#x", i, st)
		}
	}
	c := b.dial()
	if st, _ := c.login(testUser, testPassword); st != rsOK {
		t.Errorf("login with the table full of pending sessions: %#x", st)
	}
}

// Random datagrams over the socket, and every truncation and bit flip of
// real ones from the session's own address: no panic, nothing reaches
// the VM, and the BMC still works.
func TestGarbage(t *testing.T) {
	b := startBMC(t)
	good := b.dial()
	if st, _ := good.login(testUser, testPassword); st != rsOK {
		t.Fatalf("login: %#x", st)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	attacker := b.dial()
	for range 3000 {
		p := make([]byte, rng.IntN(200))
		for i := range p {
			p[i] = byte(rng.UintN(256))
		}
		if len(p) > 4 && rng.IntN(2) == 0 {
			copy(p, []byte{rmcpVersion, 0, rmcpNoAck, rmcpClassIPM, []byte{0, 6}[rng.IntN(2)]})
		}
		if _, err := attacker.conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	var packets [][]byte
	for _, valid := range [][]byte{good.signed(netFnChassis, 0x02, ctlPowerDown), openRequest(1, 0, 1, 1, 1), v15Packet(request(1, netFnApp, 0x38, 0x8e, 4))} {
		for n := range valid {
			packets = append(packets, valid[:n])
		}
		for i := range len(valid) * 8 {
			p := bytes.Clone(valid)
			p[i/8] ^= 1 << (i % 8)
			packets = append(packets, p)
		}
	}
	from := good.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, p := range packets {
		b.srv.handle(from, p)
	}
	// Drop what the sessionless ones were answered.
	for good.exchange(nil, 50*time.Millisecond) != nil {
	}
	if calls := b.vm.Calls(); len(calls) != 0 {
		t.Errorf("garbage reached the VM: %q", calls)
	}
	if cc, data, ok := good.command(netFnChassis, 0x01); !ok || cc != ccOK || len(data) != 3 {
		t.Errorf("after the garbage: %#x %x %v", cc, data, ok)
	}
}

// ipmitool holding a wrong password checks RAKP 2 itself and sends no
// RAKP 3: the unfinished login is dropped after 10 s and logged as refused.
func TestUnfinishedLoginLogged(t *testing.T) {
	clk := &clock{now: time.Unix(1e9, 0)}
	b := startBMC(t, withClock(clk))
	c := b.dial()
	if st := c.open(); st != rsOK {
		t.Fatalf("open: %#x", st)
	}
	if _, m2 := c.rakp1(testUser, "whatever-password"); len(m2) < 2 || m2[1] != rsOK {
		t.Fatalf("RAKP 2 %x", m2)
	}
	clk.add(pendingTimeout + time.Second)
	c.exchange(v15Packet(request(1, netFnApp, 0x38, 0x8e, 4)), time.Second) // any packet sweeps
	if n := len(b.logs.FilterMessage("ipmi login refused").All()); n != 1 {
		t.Errorf("%d 'ipmi login refused' lines, want 1", n)
	}
	b.srv.mu.Lock()
	defer b.srv.mu.Unlock()
	if n := len(b.srv.sessions); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}
