package image

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"path"
	"strings"
)

// Digest is a file's expected or measured digest.
type Digest struct {
	Algo string `json:"algo"` // "sha256" or "sha512"
	Hex  string `json:"hex"`  // lower case
}

func (d Digest) newHash() hash.Hash {
	if d.Algo == "sha512" {
		return sha512.New()
	}
	return sha256.New()
}

// ParseSHA256 checks a pinned sha256 given as 64 hex digits (an optional
// "sha256:" prefix, as other tools print it, is accepted).
func ParseSHA256(s string) (Digest, error) {
	h := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "sha256:"))
	if algoForLen(len(h)) != "sha256" || !isHex(h) {
		return Digest{}, fmt.Errorf("%q is not a sha256 (64 hex digits)", s)
	}
	return Digest{Algo: "sha256", Hex: h}, nil
}

// Checksums is a parsed checksum file: coreutils' `hash  name` and
// `hash *name`, BSD's `SHA256 (name) = hash`, or a lone hash. Lines that
// are none of these (comments, PGP armor around Fedora's CHECKSUM, size
// notes) are skipped, so parsing never fails.
type Checksums struct {
	entries []sumEntry
}

type sumEntry struct {
	name string // "" for a lone hash
	sum  Digest
}

// ParseChecksums reads a checksum file's content.
func ParseChecksums(data []byte) Checksums {
	var c Checksums
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if e, ok := parseSumLine(strings.TrimRight(sc.Text(), "\r")); ok {
			c.entries = append(c.entries, e)
		}
	}
	return c
}

func parseSumLine(line string) (sumEntry, bool) {
	if e, ok := parseBSDLine(line); ok {
		return e, true
	}
	return parseGNULine(line)
}

// parseBSDLine reads `SHA256 (name) = hash`; the name may hold parentheses.
func parseBSDLine(line string) (sumEntry, bool) {
	tag, rest, ok := strings.Cut(line, " (")
	if !ok {
		return sumEntry{}, false
	}
	algo := strings.ToLower(strings.TrimSpace(tag))
	i := strings.LastIndex(rest, ") = ")
	if (algo != "sha256" && algo != "sha512") || i < 0 {
		return sumEntry{}, false
	}
	h := strings.ToLower(strings.TrimSpace(rest[i+4:]))
	if algoForLen(len(h)) != algo || !isHex(h) {
		return sumEntry{}, false
	}
	return sumEntry{name: rest[:i], sum: Digest{Algo: algo, Hex: h}}, true
}

// parseGNULine reads `hash  name`, `hash *name`, a lone `hash`, and
// coreutils' escaped form (a leading backslash, names with \\ and \n).
func parseGNULine(line string) (sumEntry, bool) {
	escaped := strings.HasPrefix(line, `\`)
	if escaped {
		line = line[1:]
	}
	h, name, hasName := strings.Cut(strings.TrimSpace(line), " ")
	h = strings.ToLower(h)
	algo := algoForLen(len(h))
	if algo == "" || !isHex(h) {
		return sumEntry{}, false
	}
	if hasName {
		// One character, ' ' (text) or '*' (binary), marks the mode.
		if name != "" && (name[0] == ' ' || name[0] == '*') {
			name = name[1:]
		}
		if name == "" {
			return sumEntry{}, false
		}
		if escaped {
			name = strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(name)
		}
	}
	return sumEntry{name: name, sum: Digest{Algo: algo, Hex: h}}, true
}

// Lookup finds the digest listed for a file's base name, preferring sha256
// when both are listed. A file for one image alone (Rocky's and CentOS's
// `.CHECKSUM`/`.SHA256SUM`, Alpine's `.sha512`) often names the versioned
// file a "latest" link points to, or no file at all: when the file lists a
// single name, that entry is taken.
func (c Checksums) Lookup(name string) (Digest, bool) {
	if d, ok := c.pick(func(e sumEntry) bool { return path.Base(e.name) == name }); ok {
		return d, true
	}
	if names := c.Names(); len(names) <= 1 {
		return c.pick(func(sumEntry) bool { return true })
	}
	return Digest{}, false
}

func (c Checksums) pick(match func(sumEntry) bool) (Digest, bool) {
	var found Digest
	for _, e := range c.entries {
		if !match(e) {
			continue
		}
		if e.sum.Algo == "sha256" {
			return e.sum, true
		}
		if found.Hex == "" {
			found = e.sum
		}
	}
	return found, found.Hex != ""
}

// Names lists the distinct file names the file gives digests for.
func (c Checksums) Names() []string {
	var names []string
	seen := map[string]bool{}
	for _, e := range c.entries {
		if !seen[e.name] {
			seen[e.name] = true
			names = append(names, e.name)
		}
	}
	return names
}

func algoForLen(n int) string {
	switch n {
	case sha256.Size * 2:
		return "sha256"
	case sha512.Size * 2:
		return "sha512"
	}
	return ""
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}
