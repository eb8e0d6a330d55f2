package ipmi

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// debianPython is Debian's interpreter (another one on PATH may differ);
// its hmac module computes the RAKP values independently of this package.
const debianPython = "/usr/bin/python3"

// pythonRAKP computes, for the hash name (sha1 or sha256), the RAKP 2 and
// 3 codes, SIK, K1, K2, the RAKP 4 check value and one packet AuthCode,
// from the IPMI v2.0 formulas written out afresh in Python.
const pythonRAKP = `
import hmac, hashlib, sys, struct
h = getattr(hashlib, sys.argv[1]); icv = int(sys.argv[2])
key = b"Zq7-long-ipmi-pass"; user = b"ironic"
sidm = struct.pack("<I", 0xa0a2a3a4); sidc = struct.pack("<I", 0x01020304)
rm = bytes(range(16)); rc = bytes(range(100, 116)); guid = bytes(range(200, 216)); role = 0x14
m = lambda k, d: hmac.new(k, d, h).digest()
rakp2 = m(key, sidm + sidc + rm + rc + guid + bytes([role, len(user)]) + user)
rakp3 = m(key, rc + sidm + bytes([role, len(user)]) + user)
sik = m(key, rm + rc + bytes([role, len(user)]) + user)
k1 = m(sik, b"\x01" * 20); k2 = m(sik, b"\x02" * 20)
rakp4 = m(sik, rm + sidc + guid)[:icv]
code = m(k1, b"signed range")[:icv]
for v in (rakp2, rakp3, sik, k1, k2, rakp4, code): print(v.hex())
`

func TestRAKPAgainstPython(t *testing.T) {
	if _, err := os.Stat(debianPython); err != nil {
		t.Skip("Debian's python3 is not installed")
	}
	for _, su := range suites {
		name := map[byte]string{3: "sha1", 17: "sha256"}[su.id]
		out, err := exec.Command(debianPython, "-c", pythonRAKP, name, map[byte]string{3: "12", 17: "16"}[su.id]).CombinedOutput()
		if err != nil {
			t.Fatalf("python: %v\n%s", err, out)
		}
		want := strings.Fields(string(out))
		if len(want) != 7 {
			t.Fatalf("python printed %q", out)
		}
		r := &rakp{suite: su, consoleID: 0xa0a2a3a4, bmcID: 0x01020304, role: 0x14,
			user: []byte("ironic"), password: []byte(testPassword)}
		for i := range 16 {
			r.consoleRand[i], r.bmcRand[i], r.guid[i] = byte(i), byte(100+i), byte(200+i)
		}
		sik := r.sik()
		k1, k2 := su.keys(sik)
		keys, err := newSessionKeys(su, sik)
		if err != nil {
			t.Fatal(err)
		}
		got := [][]byte{r.rakp2Code(), r.rakp3Code(), sik, k1, k2, r.rakp4Code(sik), keys.authCode([]byte("signed range"))}
		for i, what := range []string{"RAKP 2 code", "RAKP 3 code", "SIK", "K1", "K2", "RAKP 4 check value", "AuthCode"} {
			if hex.EncodeToString(got[i]) != want[i] {
				t.Errorf("suite %d %s = %x, python %s", su.id, what, got[i], want[i])
			}
		}
	}
}

// AES-CBC with IPMI's padding: every length round-trips, the padding is
// 1, 2, … n, n, and a tampered pad is refused.
func TestEncryptRoundTrip(t *testing.T) {
	keys, err := newSessionKeys(suites[0], bytes.Repeat([]byte{7}, 20))
	if err != nil {
		t.Fatal(err)
	}
	iv := [16]byte{1, 2, 3}
	for n := range 40 {
		plain := bytes.Repeat([]byte{0xab}, n)
		enc := keys.encrypt(plain, iv)
		if len(enc)%16 != 0 || !bytes.Equal(enc[:16], iv[:]) {
			t.Fatalf("len %d: %d bytes, IV %x", n, len(enc), enc[:16])
		}
		got, err := keys.decrypt(enc)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("len %d: %x, %v", n, got, err)
		}
	}
	enc := keys.encrypt([]byte("x"), iv)
	enc[len(enc)-1] ^= 0xff // garbles the last block, and so its padding
	if _, err := keys.decrypt(enc); err == nil {
		t.Error("a garbled last block decrypted")
	}
	if _, err := keys.decrypt(enc[:20]); err == nil {
		t.Error("a partial block decrypted")
	}
}

func TestFirmware(t *testing.T) {
	for v, want := range map[string][2]byte{"v1.4.2": {1, 0x04}, "2.13.0-rc1": {2, 0x13}, "dev": {0, 0}, "v300.1": {0, 0}, "v1.x": {0, 0}} {
		if ma, mi := firmware(v); ma != want[0] || mi != want[1] {
			t.Errorf("firmware(%q) = %d.%02x, want %d.%02x", v, ma, mi, want[0], want[1])
		}
	}
}
