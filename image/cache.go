package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// entry names the files one URL owns in the cache directory. They carry the
// URL's base name for people listing the cache and a hash of the whole URL
// so that two images called disk.qcow2 never meet:
//
//	NAME.URLHASH.lock       flock'ed while a process works on the entry
//	NAME.URLHASH.part       the download in progress (resumable)
//	NAME.URLHASH.part.json  what the server said of the .part (for If-Range)
//	NAME.URLHASH.json       the record of the verified image
//	NAME.DIGEST[.EXT]       the verified (and unpacked) image itself
//
// The image's own name holds its digest, so a different image behind the
// same URL lands beside the old one instead of replacing it: an existing
// VM's overlay never sees its base change.
type entry struct {
	dir  string
	name string // the URL's base name, made safe
	base string // NAME.URLHASH
}

func newEntry(dir, rawURL string) entry {
	u, _ := url.Parse(rawURL) // checked by the caller
	sum := sha256.Sum256([]byte(rawURL))
	name := safeName(path.Base(u.Path))
	return entry{dir: dir, name: name, base: name + "." + hex.EncodeToString(sum[:6])}
}

func (e entry) lock() string     { return filepath.Join(e.dir, e.base+".lock") }
func (e entry) part() string     { return filepath.Join(e.dir, e.base+".part") }
func (e entry) partMeta() string { return filepath.Join(e.dir, e.base+".part.json") }
func (e entry) record() string   { return filepath.Join(e.dir, e.base+".json") }

// image is where the verified image goes: the digest before the extension
// (QEMU ignores the name; people read it), a compression suffix dropped
// once the content is unpacked.
func (e entry) image(sum Digest, unpacked bool) string {
	name := e.name
	if unpacked {
		name = unpackedName(name)
	}
	ext := filepath.Ext(name)
	if len(ext) > 8 || ext == name {
		ext = ""
	}
	return filepath.Join(e.dir, strings.TrimSuffix(name, ext)+"."+sum.Hex[:12]+ext)
}

func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
	s = strings.TrimLeft(s, ".")
	if len(s) > 100 {
		s = s[len(s)-100:]
	}
	if s == "" {
		return "image"
	}
	return s
}

// record is the sidecar that lets a start trust the cached image without
// reading it: the size and modification time it had when verified. A
// changed time (a copied cache) costs one re-hash against File, never a
// download.
type record struct {
	URL     string `json:"url"`
	Digest  Digest `json:"digest"` // of the download, as the publisher lists it
	Image   string `json:"image"`  // base name in the cache directory
	File    Digest `json:"file"`   // of the image as stored (after unpacking)
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
}

func readRecord(p string) (record, error) {
	var r record
	b, err := os.ReadFile(p)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", p, err)
	}
	return r, nil
}

func (r record) stamp(fi os.FileInfo) record {
	r.Size, r.ModTime = fi.Size(), fi.ModTime().UnixNano()
	return r
}

func (r record) fresh(fi os.FileInfo) bool {
	return fi.Mode().IsRegular() && fi.Size() == r.Size && fi.ModTime().UnixNano() == r.ModTime
}

// writeFileAtomic replaces p whole or not at all.
func writeFileAtomic(p string, data []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func writeRecord(p string, r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(p, append(b, '\n'))
}

// unpackedName drops the compression and archive suffixes of a packed
// image's name: disk.raw.xz is disk.raw, image.tar.gz is image.
func unpackedName(name string) string {
	for _, ext := range []string{".xz", ".gz", ".tgz", ".zst", ".zstd", ".bz2", ".tbz2", ".txz", ".zip", ".7z", ".ova", ".tar"} {
		if len(name) > len(ext) && strings.EqualFold(name[len(name)-len(ext):], ext) {
			name = name[:len(name)-len(ext)]
		}
	}
	return name
}
