package ipmi

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"hash"
)

// suite is one RMCP+ cipher suite: how RAKP authenticates, how packets
// are signed and how they are encrypted. Only suites with all three are
// offered; suite 0 (none of them) and the MD5 and RC4 ones never are.
type suite struct {
	id        byte
	auth      byte // RAKP-HMAC-SHA1 (1) or RAKP-HMAC-SHA256 (3)
	integrity byte // HMAC-SHA1-96 (1) or HMAC-SHA256-128 (4)
	conf      byte // AES-CBC-128 (1)
	newHash   func() hash.Hash
	icvLen    int // bytes of the RAKP 4 check value and of each packet's AuthCode
}

var suites = []suite{
	{id: 3, auth: 1, integrity: 1, conf: 1, newHash: sha1.New, icvLen: 12},
	{id: 17, auth: 3, integrity: 4, conf: 1, newHash: sha256.New, icvLen: 16},
}

// suiteFor is the offered suite made of these algorithms, if any.
func suiteFor(auth, integrity, conf byte) (suite, bool) {
	for _, s := range suites {
		if s.auth == auth && s.integrity == integrity && s.conf == conf {
			return s, true
		}
	}
	return suite{}, false
}

func (s suite) mac(key []byte, parts ...[]byte) []byte {
	m := hmac.New(s.newHash, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// rakp holds what both ends of one RAKP exchange know: the session ids,
// the two random numbers, the BMC's GUID, the requested role byte and the
// user name. Multi-byte ids are as on the wire (least significant first).
type rakp struct {
	suite          suite
	consoleID      uint32 // SIDm, the remote console's session id
	bmcID          uint32 // SIDc, the BMC's session id
	consoleRand    [16]byte
	bmcRand        [16]byte
	guid           [16]byte
	role           byte // ROLEm: the whole byte of RAKP 1, lookup bit included
	user, password []byte
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// userKey is Kuid: the password as HMAC key. IPMI keys are 20 bytes, zero
// padded, which HMAC treats the same as the bare password.
func (r *rakp) userKey() []byte { return r.password }

// rakp2Code is the BMC's proof of the password in RAKP message 2. Anyone
// who knows the user name gets it, and can test passwords against it
// offline: the protocol's flaw (CVE-2013-4786), see docs/ipmi.md.
func (r *rakp) rakp2Code() []byte {
	return r.suite.mac(r.userKey(), le32(r.consoleID), le32(r.bmcID), r.consoleRand[:], r.bmcRand[:], r.guid[:],
		[]byte{r.role, byte(len(r.user))}, r.user)
}

// rakp3Code is the console's proof of the password in RAKP message 3.
func (r *rakp) rakp3Code() []byte {
	return r.suite.mac(r.userKey(), r.bmcRand[:], le32(r.consoleID), []byte{r.role, byte(len(r.user))}, r.user)
}

// sik is the session integrity key; without a BMC key (Kg) the user key
// stands in for it.
func (r *rakp) sik() []byte {
	return r.suite.mac(r.userKey(), r.consoleRand[:], r.bmcRand[:], []byte{r.role, byte(len(r.user))}, r.user)
}

// rakp4Code is the BMC's check value in RAKP message 4, truncated.
func (r *rakp) rakp4Code(sik []byte) []byte {
	return r.suite.mac(sik, r.consoleRand[:], le32(r.bmcID), r.guid[:])[:r.suite.icvLen]
}

// keys derives K1 (integrity) and K2 (its first 16 bytes are the AES key)
// from the SIK. The constants are 20 bytes for every suite, as the
// reference implementations use them.
func (s suite) keys(sik []byte) (k1, k2 []byte) {
	c1, c2 := make([]byte, 20), make([]byte, 20)
	for i := range c1 {
		c1[i], c2[i] = 1, 2
	}
	return s.mac(sik, c1), s.mac(sik, c2)
}

// sessionKeys are one session's packet keys.
type sessionKeys struct {
	suite suite
	k1    []byte
	block cipher.Block
}

func newSessionKeys(s suite, sik []byte) (*sessionKeys, error) {
	k1, k2 := s.keys(sik)
	b, err := aes.NewCipher(k2[:16])
	if err != nil {
		return nil, err
	}
	return &sessionKeys{suite: s, k1: k1, block: b}, nil
}

// authCode signs data (from the session header's auth type to the next
// header byte).
func (k *sessionKeys) authCode(data []byte) []byte {
	return k.suite.mac(k.k1, data)[:k.suite.icvLen]
}

func (k *sessionKeys) verify(data, code []byte) bool {
	return subtle.ConstantTimeCompare(k.authCode(data), code) == 1
}

// encrypt is AES-CBC-128 with a fresh IV in front and IPMI's padding:
// bytes 1, 2, … n and then n, to a whole number of blocks.
func (k *sessionKeys) encrypt(plain []byte, iv [16]byte) []byte {
	n := (16 - (len(plain)+1)%16) % 16
	buf := make([]byte, 16, 16+len(plain)+n+1)
	copy(buf, iv[:])
	buf = append(buf, plain...)
	for i := 1; i <= n; i++ {
		buf = append(buf, byte(i))
	}
	buf = append(buf, byte(n))
	cipher.NewCBCEncrypter(k.block, iv[:]).CryptBlocks(buf[16:], buf[16:])
	return buf
}

var errBadPadding = errors.New("bad confidentiality padding")

func (k *sessionKeys) decrypt(payload []byte) ([]byte, error) {
	if len(payload) < 32 || len(payload)%16 != 0 {
		return nil, errBadPadding
	}
	out := make([]byte, len(payload)-16)
	cipher.NewCBCDecrypter(k.block, payload[:16]).CryptBlocks(out, payload[16:])
	n := int(out[len(out)-1])
	if n > 15 || n+1 > len(out) {
		return nil, errBadPadding
	}
	body := out[:len(out)-1-n]
	for i, b := range out[len(body) : len(out)-1] {
		if int(b) != i+1 {
			return nil, errBadPadding
		}
	}
	return body, nil
}
