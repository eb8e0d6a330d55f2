package ipmi

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// FuzzPacket feeds arbitrary datagrams to the whole receive path (headers,
// session lookup, RAKP, trailers) and arbitrary request bodies to every
// command of an Administrator session: nothing may panic, and only
// well-formed requests reach the VM.
func FuzzPacket(f *testing.F) {
	keys, _ := newSessionKeys(suites[0], bytes.Repeat([]byte{1}, 20))
	m1 := []byte{2, 0, 0, 0, 1, 0, 0, 0}
	m1 = append(m1, make([]byte, 16)...)
	m1 = append(m1, 0x14, 0, 0, 6)
	m1 = append(m1, "ironic"...)
	for _, seed := range [][]byte{
		openRequest(0xa0a2a3a4, 0, 1, 1, 1),
		openRequest(1, 4, 3, 4, 1),
		v15Packet(request(1, netFnApp, 0x38, 0x8e, 0x04)),
		v20Packet(payloadIPMI, 0, 0, request(2, netFnApp, 0x54, 0x0e, 0, 0x80), nil, [16]byte{}),
		v20Packet(payloadRAKP1, 0, 0, m1, nil, [16]byte{}),
		v20Packet(payloadRAKP3, 0, 0, append([]byte{3, 0, 0, 0, 1, 0, 0, 0}, make([]byte, 20)...), nil, [16]byte{}),
		v20Packet(payloadIPMI, 1, 1, request(3, netFnChassis, 0x02, 1), keys, [16]byte{}),
		request(4, netFnChassis, 0x08, 5, 0xe0, 0x04, 0, 0, 0),
		request(5, netFnChassis, 0x09, 5, 0, 0),
		request(6, netFnApp, 0x3c, 1, 2, 3, 4),
		{rmcpVersion, 0, rmcpNoAck, rmcpClassIPM, authRMCPPlus, 0xc0},
	} {
		f.Add(seed)
	}
	from := netip.MustParseAddrPort("192.0.2.7:623")
	f.Fuzz(func(t *testing.T, b []byte) {
		vm := newFakeVM()
		s := New(vm, Options{Username: testUser, Password: testPassword})
		s.handle(from, b)
		// The same bytes as the IPMI message of an Administrator session.
		m, err := parseMessage(b)
		if err != nil {
			if len(vm.Calls()) != 0 {
				t.Fatalf("a datagram without a session reached the VM: %x", b)
			}
			return
		}
		ss := &session{bmcID: binary.LittleEndian.Uint32([]byte{1, 2, 3, 4}), priv: privAdmin, maxPriv: privAdmin, addr: from}
		resp, _ := s.runCommand(ss, m)
		if _, err := parseMessage(resp); err == nil {
			t.Fatalf("a response parses as a request: %x", resp)
		}
	})
}
