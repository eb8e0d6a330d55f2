package ipmi

import (
	"encoding/binary"
	"errors"
)

// Wire constants of RMCP and the IPMI session headers (IPMI v2.0, 13.x).
const (
	rmcpVersion  = 0x06
	rmcpNoAck    = 0xff
	rmcpClassIPM = 0x07

	authNone     = 0x00 // IPMI 1.5 header without authentication
	authRMCPPlus = 0x06 // IPMI 2.0 (RMCP+) header

	payloadIPMI      = 0x00
	payloadOEM       = 0x02
	payloadOpenReq   = 0x10
	payloadOpenResp  = 0x11
	payloadRAKP1     = 0x12
	payloadRAKP2     = 0x13
	payloadRAKP3     = 0x14
	payloadRAKP4     = 0x15
	payloadEncrypted = 0x80
	payloadSigned    = 0x40
	nextHeader       = 0x07
)

// maxPacket bounds what is read and parsed: every request of this BMC
// fits in a few hundred bytes.
const maxPacket = 1024

var errMalformed = errors.New("malformed packet")

// packet is one parsed datagram, its session trailer not yet checked.
type packet struct {
	v15       bool // the IPMI 1.5 header (session-less only)
	ptype     byte // payload type without the encrypted/signed bits
	encrypted bool
	signed    bool
	sessionID uint32
	seq       uint32
	payload   []byte
	// trailer is what follows the payload of a signed packet: integrity
	// pad, pad length, next header and AuthCode.
	trailer []byte
	raw     []byte
}

// parsePacket reads the RMCP and session headers. It never panics and
// refuses anything this BMC does not speak: other RMCP classes, IPMI 1.5
// authentication types, OEM payloads, lengths that disagree.
func parsePacket(b []byte) (*packet, error) {
	if len(b) < 5 || len(b) > maxPacket || b[0] != rmcpVersion || b[3] != rmcpClassIPM {
		return nil, errMalformed
	}
	p := &packet{raw: b}
	switch b[4] {
	case authNone:
		// auth type, sequence, session id, length, message
		if len(b) < 14 {
			return nil, errMalformed
		}
		p.v15 = true
		p.seq = binary.LittleEndian.Uint32(b[5:])
		p.sessionID = binary.LittleEndian.Uint32(b[9:])
		n := int(b[13])
		if len(b) < 14+n || p.sessionID != 0 {
			return nil, errMalformed
		}
		p.payload = b[14 : 14+n]
		return p, nil
	case authRMCPPlus:
		if len(b) < 16 {
			return nil, errMalformed
		}
		p.ptype = b[5] & 0x3f
		p.encrypted = b[5]&payloadEncrypted != 0
		p.signed = b[5]&payloadSigned != 0
		if p.ptype == payloadOEM {
			return nil, errMalformed
		}
		p.sessionID = binary.LittleEndian.Uint32(b[6:])
		p.seq = binary.LittleEndian.Uint32(b[10:])
		n := int(binary.LittleEndian.Uint16(b[14:]))
		if len(b) < 16+n {
			return nil, errMalformed
		}
		p.payload = b[16 : 16+n]
		p.trailer = b[16+n:]
		if !p.signed && len(p.trailer) != 0 {
			return nil, errMalformed
		}
		return p, nil
	}
	return nil, errMalformed
}

// checkTrailer verifies a signed packet's trailer with the session's keys:
// the pad makes the signed range a multiple of 4 bytes, is all 0xFF, and
// the AuthCode matches.
func (p *packet) checkTrailer(k *sessionKeys) bool {
	n := k.suite.icvLen
	t := p.trailer
	if len(t) < n+2 {
		return false
	}
	codeAt := len(p.raw) - n
	pad := int(t[len(t)-n-2])
	if t[len(t)-n-1] != nextHeader || pad != len(t)-n-2 || (codeAt-4)%4 != 0 {
		return false
	}
	for _, c := range t[:pad] {
		if c != 0xff {
			return false
		}
	}
	return k.verify(p.raw[4:codeAt], p.raw[codeAt:])
}

func rmcpHeader() []byte { return []byte{rmcpVersion, 0, rmcpNoAck, rmcpClassIPM} }

// v15Packet wraps a session-less IPMI message in the IPMI 1.5 header.
func v15Packet(msg []byte) []byte {
	b := rmcpHeader()
	b = append(b, authNone, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(msg)))
	return append(b, msg...)
}

// v20Packet wraps payload in the RMCP+ header; with keys the payload is
// encrypted (iv is its IV) and the packet signed.
func v20Packet(ptype byte, sessionID, seq uint32, payload []byte, k *sessionKeys, iv [16]byte) []byte {
	b := rmcpHeader()
	t := ptype
	if k != nil {
		t |= payloadEncrypted | payloadSigned
		payload = k.encrypt(payload, iv)
	}
	b = append(b, authRMCPPlus, t)
	b = binary.LittleEndian.AppendUint32(b, sessionID)
	b = binary.LittleEndian.AppendUint32(b, seq)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, payload...)
	if k == nil {
		return b
	}
	pad := (4 - (len(b)-4+2)%4) % 4
	for range pad {
		b = append(b, 0xff)
	}
	b = append(b, byte(pad), nextHeader)
	return append(b, k.authCode(b[4:])...)
}

// message is an IPMI request as carried on LAN (IPMI v2.0, 13.8).
type message struct {
	netFn, cmd byte
	rqSeq      byte // sequence (bits 7:2) and requester LUN (1:0), echoed
	rqAddr     byte
	rsAddr     byte
	rsLUN      byte
	data       []byte
}

func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// parseMessage reads a request and checks both checksums.
func parseMessage(b []byte) (message, error) {
	if len(b) < 7 || checksum(b[:2]) != b[2] || checksum(b[3:len(b)-1]) != b[len(b)-1] {
		return message{}, errMalformed
	}
	if b[1]>>2&1 != 0 { // a response, not a request
		return message{}, errMalformed
	}
	return message{rsAddr: b[0], netFn: b[1] >> 2, rsLUN: b[1] & 3, rqAddr: b[3], rqSeq: b[4], cmd: b[5], data: b[6 : len(b)-1]}, nil
}

// response is the answer to m with completion code cc and data.
func (m message) response(cc byte, data ...byte) []byte {
	b := []byte{m.rqAddr, (m.netFn+1)<<2 | m.rqSeq&3}
	b = append(b, checksum(b))
	start := len(b)
	b = append(b, m.rsAddr, m.rqSeq&^3|m.rsLUN, m.cmd, cc)
	b = append(b, data...)
	return append(b, checksum(b[start:]))
}
