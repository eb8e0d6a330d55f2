package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// compressions are recognised by their magic bytes: a name can lie (a
// .img that is xz, a .qcow2.gz served as application/octet-stream).
var compressions = []struct {
	name  string
	magic []byte
}{
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{"gzip", []byte{0x1f, 0x8b}},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}},
}

func compressionOf(header []byte) string {
	for _, c := range compressions {
		if bytes.HasPrefix(header, c.magic) {
			return c.name
		}
	}
	return ""
}

// install moves the verified .part into its place as a plain image,
// unpacking it first if it is compressed. It returns the image's path and
// the digest of the image as stored, for later re-checks.
func (f *fetcher) install(ctx context.Context, got Digest) (string, Digest, error) {
	part := f.entry.part()
	header := make([]byte, 8)
	in, err := os.Open(part)
	if err != nil {
		return "", Digest{}, err
	}
	n, _ := io.ReadFull(in, header)
	in.Close()
	kind := compressionOf(header[:n])
	if kind == "" {
		dst := f.entry.image(got, false)
		if err := os.Rename(part, dst); err != nil {
			return "", Digest{}, fmt.Errorf("image cache: %w", err)
		}
		return dst, got, syncDir(filepath.Dir(dst))
	}
	dst := f.entry.image(got, true)
	f.log("unpacking image", "compression", kind, "path", dst)
	start := time.Now()
	file, err := f.unpack(ctx, kind, part, dst)
	// Unpacking a verified download fails the same way every time: keeping
	// the .part would only repeat this on the next start.
	os.Remove(part)
	if err != nil {
		os.Remove(f.entry.partMeta())
		return "", Digest{}, fmt.Errorf("unpacking %s (%s): %w", f.req.URL, kind, err)
	}
	f.log("unpacked image", "path", dst, "seconds", time.Since(start).Seconds())
	return dst, file, syncDir(filepath.Dir(dst))
}

// unpack decompresses src into dst (through a temporary file, renamed when
// whole), leaving holes for zero blocks, and returns dst's sha256. It
// stops at EXTRACT_MAX_SIZE, and first checks that what the archive says
// it unpacks to fits in the cache.
func (f *fetcher) unpack(ctx context.Context, kind, src, dst string) (Digest, error) {
	in, err := os.Open(src)
	if err != nil {
		return Digest{}, err
	}
	defer in.Close()
	what, limit := "unpacking "+f.req.URL, f.req.MaxUnpacked
	if n, ok := unpackedSize(kind, in); ok {
		if limit > 0 && n > limit {
			return Digest{}, &LimitError{Var: "EXTRACT_MAX_SIZE", Limit: limit, What: what, Size: n}
		}
		if err := checkSpace(filepath.Dir(dst), what, n); err != nil {
			return Digest{}, err
		}
	}
	r, closeReader, err := decompressor(kind, bufio.NewReaderSize(in, 1<<20))
	if err != nil {
		return Digest{}, err
	}
	defer closeReader()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return Digest{}, err
	}
	h := sha256.New()
	capped := &cappedReader{r: ctxReader{ctx, r}, limit: limit, err: func(n int64) error {
		return &LimitError{Var: "EXTRACT_MAX_SIZE", Limit: limit, What: what, Size: n}
	}}
	err = writeSparse(out, io.TeeReader(capped, h))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return Digest{}, err
	}
	return Digest{Algo: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, nil
}

func decompressor(kind string, r io.Reader) (io.Reader, func(), error) {
	switch kind {
	case "gzip":
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, func() { z.Close() }, nil
	case "xz":
		z, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, func() {}, nil
	case "zstd":
		z, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return z, z.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown compression %q", kind)
}

// syncDir makes a rename inside dir survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
