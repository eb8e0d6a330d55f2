package ipmi

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/controller"
)

// Completion codes (IPMI v2.0, table 5-2).
const (
	ccOK                    = 0x00
	ccParamNotSupported     = 0x80
	ccPrivilegeNotAvailable = 0x81
	ccInvalidSessionID      = 0x87
	ccInvalidCommand        = 0xc1
	ccTimeout               = 0xc3
	ccDataLength            = 0xc7
	ccInvalidData           = 0xcc
	ccInsufficientPrivilege = 0xd4
	ccNotInThisState        = 0xd5
	ccUnspecified           = 0xff
)

// Network functions.
const (
	netFnChassis = 0x00
	netFnApp     = 0x06
)

// commandTimeout bounds one controller call: a power-on starts QEMU.
const commandTimeout = 2 * time.Minute

// lanChannel is the channel number this BMC reports for itself.
const lanChannel = 0x01

type call struct {
	ctx  context.Context
	msg  message
	sess *session // nil before a session
	// closeSession: end the session once the answer is sent.
	closeSession bool
}

type command struct {
	name string
	priv byte
	// sessionless commands are also answered before a session.
	sessionless bool
	changes     bool // it changes the VM: logged at info level
	run         func(s *Server, c *call) (data []byte, cc byte)
}

func cmdKey(netFn, cmd byte) uint16 { return uint16(netFn)<<8 | uint16(cmd) }

var commands = map[uint16]command{
	cmdKey(netFnApp, 0x01):     {name: "get device id", priv: privUser, run: (*Server).deviceID},
	cmdKey(netFnApp, 0x37):     {name: "get system guid", priv: privUser, run: (*Server).systemGUID},
	cmdKey(netFnApp, 0x38):     {name: "get channel authentication capabilities", priv: privCallback, sessionless: true, run: (*Server).authCapabilities},
	cmdKey(netFnApp, 0x54):     {name: "get channel cipher suites", priv: privCallback, sessionless: true, run: (*Server).cipherSuites},
	cmdKey(netFnApp, 0x3b):     {name: "set session privilege level", priv: privCallback, run: (*Server).setPrivilege},
	cmdKey(netFnApp, 0x3c):     {name: "close session", priv: privCallback, run: (*Server).closeSession},
	cmdKey(netFnChassis, 0x01): {name: "get chassis status", priv: privUser, run: (*Server).chassisStatus},
	cmdKey(netFnChassis, 0x02): {name: "chassis control", priv: privOperator, changes: true, run: (*Server).chassisControl},
	cmdKey(netFnChassis, 0x08): {name: "set system boot options", priv: privOperator, changes: true, run: (*Server).setBootOptions},
	cmdKey(netFnChassis, 0x09): {name: "get system boot options", priv: privUser, run: (*Server).getBootOptions},
}

// channelOK accepts "this channel" (0x0E) and the LAN channel's number.
func channelOK(b byte) bool { return b&0x0f == 0x0e || b&0x0f == lanChannel }

func (s *Server) authCapabilities(c *call) ([]byte, byte) {
	d := c.msg.data
	if len(d) != 2 {
		return nil, ccDataLength
	}
	if !channelOK(d[0]) || d[1]&0x0f == 0 || d[1]&0x0f > 5 {
		return nil, ccInvalidData
	}
	// No IPMI 1.5 authentication types; non-null user names only, no null
	// or anonymous users; per-message and user-level authentication on;
	// no BMC key (Kg).
	out := []byte{lanChannel, 0x00, 0x04, 0x00, 0, 0, 0, 0}
	if d[0]&0x80 != 0 {
		out[1] = 0x80 // IPMI 2.0 extended data follows
		out[3] = 0x02 // the channel speaks IPMI 2.0 only
	}
	return out, ccOK
}

// cipherSuiteRecords lists the offered suites as Get Channel Cipher Suites
// records: start of record, id, then the algorithms tagged by kind.
func cipherSuiteRecords(bySuite bool) []byte {
	var out []byte
	if bySuite {
		for _, su := range suites {
			out = append(out, 0xc0, su.id, su.auth, 0x40|su.integrity, 0x80|su.conf)
		}
		return out
	}
	seen := map[byte]bool{}
	for _, su := range suites {
		for _, a := range []byte{su.auth, 0x40 | su.integrity, 0x80 | su.conf} {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

func (s *Server) cipherSuites(c *call) ([]byte, byte) {
	d := c.msg.data
	if len(d) != 3 {
		return nil, ccDataLength
	}
	if !channelOK(d[0]) || d[1]&0x3f > 1 {
		return nil, ccInvalidData
	}
	recs := cipherSuiteRecords(d[2]&0x80 != 0)
	at := int(d[2]&0x3f) * 16
	out := []byte{lanChannel}
	if at < len(recs) {
		out = append(out, recs[at:min(at+16, len(recs))]...)
	}
	return out, ccOK
}

func (s *Server) setPrivilege(c *call) ([]byte, byte) {
	d := c.msg.data
	if len(d) != 1 {
		return nil, ccDataLength
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := d[0] & 0x0f
	switch {
	case want == 0:
	case want > privAdmin:
		return nil, ccInvalidData
	case want > c.sess.maxPriv:
		return nil, ccPrivilegeNotAvailable
	default:
		c.sess.priv = want
	}
	return []byte{c.sess.priv}, ccOK
}

func (s *Server) closeSession(c *call) ([]byte, byte) {
	d := c.msg.data
	if len(d) < 4 {
		return nil, ccDataLength
	}
	if binary.LittleEndian.Uint32(d) != c.sess.bmcID {
		return nil, ccInvalidSessionID
	}
	c.closeSession = true
	return nil, ccOK
}

// firmware reads vmrunner's version as major and minor ("v1.4.2" is 1.04);
// anything else (a development build) is 0.00.
func firmware(version string) (major, minor byte) {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil || ma < 0 || ma > 127 || mi < 0 || mi > 99 {
		return 0, 0
	}
	return byte(ma), byte(mi/10<<4 | mi%10)
}

func (s *Server) deviceID(c *call) ([]byte, byte) {
	major, minor := firmware(s.opt.Version)
	// Device id 0, revision 0 without SDRs, firmware, IPMI 2.0, a chassis
	// device, manufacturer and product unspecified.
	return []byte{0x00, 0x00, major, minor, 0x02, 0x80, 0, 0, 0, 0, 0}, ccOK
}

func (s *Server) systemGUID(c *call) ([]byte, byte) {
	g := s.guid()
	return g[:], ccOK
}

func (s *Server) chassisStatus(c *call) ([]byte, byte) {
	st := s.api.Status()
	// Power restore policy "unknown" (bits 6:5); power on while a QEMU
	// process exists, as a server is on from power-up to power-off.
	state := byte(0x60)
	if st.Power != controller.Off {
		state |= 0x01
	}
	return []byte{state, 0x00, 0x00}, ccOK
}

// Chassis control actions (IPMI v2.0, 28.3).
const (
	ctlPowerDown = 0
	ctlPowerUp   = 1
	ctlCycle     = 2
	ctlHardReset = 3
	ctlDiag      = 4
	ctlSoft      = 5
)

func (s *Server) chassisControl(c *call) ([]byte, byte) {
	d := c.msg.data
	if len(d) != 1 {
		return nil, ccDataLength
	}
	off := s.api.Status().Power == controller.Off
	var err error
	switch d[0] & 0x0f {
	case ctlPowerDown, ctlSoft:
		if off {
			return nil, ccOK // already where it was asked to go
		}
		err = s.api.PowerOff(c.ctx, d[0]&0x0f == ctlSoft)
	case ctlPowerUp:
		if !off {
			return nil, ccOK
		}
		err = s.api.PowerOn(c.ctx)
	case ctlCycle:
		// Off, then on; a VM that is off is just powered on.
		if err = s.api.PowerOff(c.ctx, false); errors.Is(err, controller.ErrState) {
			err = nil
		}
		if err == nil {
			err = s.api.PowerOn(c.ctx)
		}
	case ctlHardReset:
		err = s.api.Reset(c.ctx)
	case ctlDiag:
		err = s.api.NMI(c.ctx)
	default:
		return nil, ccInvalidData
	}
	return nil, errCode(err)
}

// bootParams are the boot option parameters the BMC only stores: set in
// progress (0), the valid-bit clearing mask (3) and the boot info
// acknowledge bits (4). The boot flags (5) live in the controller.
type bootParams struct {
	inProgress byte
	clearing   byte
	ack        [2]byte
}

// Boot device selectors of boot flags byte 2, bits 5:2.
const (
	bootSelNone  = 0x0
	bootSelPXE   = 0x1
	bootSelDisk  = 0x2
	bootSelSafe  = 0x3
	bootSelCDROM = 0x5
)

// Boot flags byte 1.
const (
	bootFlagValid      = 0x80
	bootFlagPersistent = 0x40
	bootFlagEFI        = 0x20
)

func (s *Server) getBootOptions(c *call) ([]byte, byte) {
	d := c.msg.data
	if len(d) != 3 {
		return nil, ccDataLength
	}
	param := d[0] & 0x7f
	out := []byte{0x01, param} // parameter version 1; valid, unlocked
	s.mu.Lock()
	bp := s.boot
	s.mu.Unlock()
	switch param {
	case 0:
		return append(out, bp.inProgress), ccOK
	case 3:
		return append(out, bp.clearing), ccOK
	case 4:
		return append(out, bp.ack[:]...), ccOK
	case 5:
		return append(out, bootFlags(s.api.Status())...), ccOK
	}
	return nil, ccParamNotSupported
}

// bootFlags is parameter 5 as the controller's next start will boot.
func bootFlags(st controller.Status) []byte {
	var b1, sel byte
	switch st.Boot.Device {
	case controller.BootNetwork:
		sel = bootSelPXE
	case controller.BootDisk:
		sel = bootSelDisk
	case controller.BootCD:
		sel = bootSelCDROM
	}
	if sel != bootSelNone {
		b1 |= bootFlagValid
		if !st.Boot.Once {
			b1 |= bootFlagPersistent
		}
	}
	if st.BootMode != config.BootLegacy {
		b1 |= bootFlagEFI
	}
	return []byte{b1, sel << 2, 0, 0, 0}
}

func (s *Server) setBootOptions(c *call) ([]byte, byte) {
	d := c.msg.data
	if len(d) < 1 {
		return nil, ccDataLength
	}
	param, v := d[0]&0x7f, d[1:]
	want := map[byte]int{0: 1, 3: 1, 4: 2, 5: 5}
	n, ok := want[param]
	if !ok {
		return nil, ccParamNotSupported
	}
	if len(v) != n {
		return nil, ccDataLength
	}
	s.mu.Lock()
	switch param {
	case 0:
		s.boot.inProgress = v[0] & 0x03
	case 3:
		s.boot.clearing = v[0] & 0x1f
	case 4:
		// Byte 1 says which bits of byte 2 to write.
		s.boot.ack[1] = s.boot.ack[1]&^v[0] | v[1]&v[0]
	}
	s.mu.Unlock()
	if param != 5 {
		return nil, ccOK
	}
	return nil, s.setBootFlags(c.ctx, v)
}

// setBootFlags applies parameter 5: the device and whether it holds for
// one start or all. The EFI bit is not obeyed: here the firmware is the
// VM's for good (there is no "this boot only" firmware), so a plain
// `chassis bootdev pxe` would otherwise turn a UEFI or Secure Boot VM
// into a BIOS one for every later start. VirtualBMC, which the seed
// project used, ignores it too; the firmware changes with `vmrunner
// boot-mode` or Redfish's BootSourceOverrideMode.
func (s *Server) setBootFlags(ctx context.Context, v []byte) byte {
	if v[0]&bootFlagValid == 0 {
		return errCode(s.api.SetBoot(ctx, controller.BootOverride{}))
	}
	var dev controller.BootDevice
	switch v[1] >> 2 & 0x0f {
	case bootSelNone:
		return errCode(s.api.SetBoot(ctx, controller.BootOverride{}))
	case bootSelPXE:
		dev = controller.BootNetwork
	case bootSelDisk, bootSelSafe:
		dev = controller.BootDisk
	case bootSelCDROM:
		dev = controller.BootCD
	default:
		return ccInvalidData // diagnostic partition, BIOS setup, floppy
	}
	return errCode(s.api.SetBoot(ctx, controller.BootOverride{Device: dev, Once: v[0]&bootFlagPersistent == 0}))
}
