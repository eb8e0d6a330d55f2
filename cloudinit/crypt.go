package cloudinit

import (
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"slices"
	"strconv"
)

// cryptAlphabet is crypt(3)'s base-64 alphabet, used both for salts and for
// encoding the final digest.
const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

const (
	maxSaltLen    = 16
	defaultRounds = 5000
	minRounds     = 1000
	maxRounds     = 999999999
)

// HashPassword returns the SHA-512 crypt hash ($6$salt$...) of password with
// the default 5000 rounds, as accepted by cloud-init's hashed_passwd and
// /etc/shadow. Only the first 16 characters of salt are used.
func HashPassword(password, salt string) string {
	return sha512Crypt([]byte(password), []byte(salt), 0)
}

// NewSalt returns a random 16-character crypt salt.
func NewSalt() (string, error) {
	b := make([]byte, maxSaltLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random salt: %w", err)
	}
	for i := range b {
		// 64 divides 256, so masking keeps every character equally likely.
		b[i] = cryptAlphabet[b[i]&63]
	}
	return string(b), nil
}

// passwordAlphabet leaves out characters that are easily misread (0O1lI)
// or need quoting in a shell.
const passwordAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// NewPassword returns a random password of n characters, about 5.8 bits
// each: 20 for a guest's login (116 bits), 8 for VNC (all VNC auth uses).
func NewPassword(n int) (string, error) {
	out := make([]byte, 0, n)
	b := make([]byte, 1)
	for len(out) < cap(out) {
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("reading random password: %w", err)
		}
		// Rejecting the top of the range keeps every character equally likely.
		if int(b[0]) < 256-256%len(passwordAlphabet) {
			out = append(out, passwordAlphabet[int(b[0])%len(passwordAlphabet)])
		}
	}
	return string(out), nil
}

// sha512Crypt implements Ulrich Drepper's "Unix crypt using SHA-256 and
// SHA-512" for SHA-512. rounds 0 means the default and, as in crypt(3), keeps
// "rounds=" out of the result; any other value is clamped to the
// specification's limits and written out.
func sha512Crypt(key, salt []byte, rounds int) string {
	if len(salt) > maxSaltLen {
		salt = salt[:maxSaltLen]
	}
	prefix := "$6$"
	if rounds == 0 {
		rounds = defaultRounds
	} else {
		rounds = min(max(rounds, minRounds), maxRounds)
		prefix += "rounds=" + strconv.Itoa(rounds) + "$"
	}

	b := sha512.Sum512(slices.Concat(key, salt, key))

	a := sha512.New()
	a.Write(key)
	a.Write(salt)
	a.Write(repeatTo(b[:], len(key)))
	for n := len(key); n > 0; n >>= 1 {
		if n&1 != 0 {
			a.Write(b[:])
		} else {
			a.Write(key)
		}
	}
	digest := a.Sum(nil)

	dp := sha512.New()
	for range len(key) {
		dp.Write(key)
	}
	p := repeatTo(dp.Sum(nil), len(key))

	ds := sha512.New()
	for range 16 + int(digest[0]) {
		ds.Write(salt)
	}
	s := repeatTo(ds.Sum(nil), len(salt))

	c := sha512.New()
	for i := range rounds {
		c.Reset()
		if i&1 != 0 {
			c.Write(p)
		} else {
			c.Write(digest)
		}
		if i%3 != 0 {
			c.Write(s)
		}
		if i%7 != 0 {
			c.Write(p)
		}
		if i&1 != 0 {
			c.Write(digest)
		} else {
			c.Write(p)
		}
		digest = c.Sum(digest[:0])
	}

	return prefix + string(salt) + "$" + encodeDigest(digest)
}

// repeatTo returns n bytes of block repeated cyclically.
func repeatTo(block []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, block[:min(len(block), n-len(out))]...)
	}
	return out
}

// encodeDigest encodes the 64-byte digest in the byte order the
// specification prescribes: 21 groups of three bytes taken 21 positions
// apart and rotated one step per group, then the last byte alone.
func encodeDigest(d []byte) string {
	out := make([]byte, 0, 86)
	for i := range 21 {
		g := [3]int{i, i + 21, i + 42}
		r := i % 3
		w := uint(d[g[r]])<<16 | uint(d[g[(r+1)%3]])<<8 | uint(d[g[(r+2)%3]])
		out = appendBase64(out, w, 4)
	}
	return string(appendBase64(out, uint(d[63]), 2))
}

func appendBase64(out []byte, w uint, n int) []byte {
	for range n {
		out = append(out, cryptAlphabet[w&63])
		w >>= 6
	}
	return out
}
