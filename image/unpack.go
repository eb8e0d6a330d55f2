package image

import (
	"bufio"
	"bytes"
	"compress/bzip2"
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
// bzip2's magic is its stream header and the first block's, so that a
// disk that happens to start with "BZh" is not taken for one.
var compressions = []struct {
	name  string
	magic []byte
}{
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{"gzip", []byte{0x1f, 0x8b}},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{"bzip2", []byte("BZh")},
}

var bzip2Block = []byte{0x31, 0x41, 0x59, 0x26, 0x53, 0x59}

func compressionOf(header []byte) string {
	for _, c := range compressions {
		if !bytes.HasPrefix(header, c.magic) {
			continue
		}
		if c.name == "bzip2" && (len(header) < 10 || header[3] < '1' || header[3] > '9' || !bytes.Equal(header[4:10], bzip2Block)) {
			continue
		}
		return c.name
	}
	return ""
}

// packingOf names what a file's first bytes say it is packed as: a
// compression, an archive (zip, 7z, tar), or "" for a plain image.
func packingOf(header []byte) string {
	if c := compressionOf(header); c != "" {
		return c
	}
	return archiveOf(header)
}

// sniffHeader is enough of a file to tell its packing (tar's magic is at
// 257).
const sniffHeader = 512

// Packing names what the file at path is packed as, by its content: xz,
// gzip, zstd, bzip2, zip, 7z or tar; "" for a plain image.
func Packing(path string) (string, error) { return sniffFile(path) }

func sniffFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := make([]byte, sniffHeader)
	n, err := io.ReadFull(f, h)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return "", err
	}
	return packingOf(h[:n]), nil
}

// install moves the verified .part into its place as a plain image,
// unpacking it first if it is compressed or an archive. It returns the
// image's path and the digest of the image as stored, for later re-checks.
func (f *fetcher) install(ctx context.Context, got Digest) (string, Digest, error) {
	part := f.entry.part()
	kind, err := sniffFile(part)
	if err != nil {
		return "", Digest{}, err
	}
	if kind == "" {
		dst := f.entry.image(got, false)
		if err := os.Rename(part, dst); err != nil {
			return "", Digest{}, fmt.Errorf("image cache: %w", err)
		}
		return dst, got, syncDir(filepath.Dir(dst))
	}
	dst := f.entry.image(got, true)
	f.log("unpacking image", "packing", kind, "path", dst)
	start := time.Now()
	file, err := unpackFile(ctx, unpackJob{src: part, dst: dst, limit: f.req.MaxUnpacked, what: "unpacking " + f.req.URL, log: f.log})
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

// unpackJob is one unpacking: src (compressed, an archive, or both) into
// dst, capped at limit bytes (EXTRACT_MAX_SIZE; 0: no cap).
type unpackJob struct {
	src, dst string
	limit    int64
	what     string // "unpacking URL", for errors
	log      func(string, ...any)
}

func (j unpackJob) limitError(n int64) error {
	return &LimitError{Var: "EXTRACT_MAX_SIZE", Limit: j.limit, What: j.what, Size: n}
}

// announced checks a size an archive or a compressed stream states for
// what it unpacks to, before any byte is written: against the cap and
// against the free space of the cache.
func (j unpackJob) announced(n int64) error {
	if n < 0 || (j.limit > 0 && n > j.limit) {
		return j.limitError(n)
	}
	return checkSpace(filepath.Dir(j.dst), j.what, n)
}

// capped stops r once more than the cap came through it.
func (j unpackJob) capped(ctx context.Context, r io.Reader) io.Reader {
	return &cappedReader{r: ctxReader{ctx, r}, limit: j.limit, err: j.limitError}
}

// unpackFile unpacks j.src into j.dst, whatever the packing its content
// shows, and returns dst's sha256. No name from inside an archive is ever
// used as a path: the image is written to dst alone.
func unpackFile(ctx context.Context, j unpackJob) (Digest, error) {
	if j.log == nil {
		j.log = func(string, ...any) {}
	}
	in, err := os.Open(j.src)
	if err != nil {
		return Digest{}, err
	}
	defer in.Close()
	h := make([]byte, sniffHeader)
	n, _ := io.ReadFull(in, h)
	kind := packingOf(h[:n])
	switch kind {
	case "zip":
		return unpackZip(ctx, j, in)
	case "7z":
		return unpack7z(ctx, j, in)
	case "tar":
		if _, err := in.Seek(0, io.SeekStart); err != nil {
			return Digest{}, err
		}
		return unpackTar(ctx, j, bufio.NewReaderSize(in, 1<<20))
	case "":
		return Digest{}, fmt.Errorf("%s is neither compressed nor an archive", j.src)
	}
	if n, ok := unpackedSize(kind, in); ok {
		if err := j.announced(n); err != nil {
			return Digest{}, err
		}
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return Digest{}, err
	}
	r, closeReader, err := decompressor(kind, bufio.NewReaderSize(in, 1<<20))
	if err != nil {
		return Digest{}, err
	}
	defer closeReader()
	// A compressed tar (.tar.xz, .tgz): the whole stream counts against
	// the cap, members skipped over included.
	br := bufio.NewReaderSize(j.capped(ctx, r), 1<<20)
	if peek, _ := br.Peek(sniffHeader); isTar(peek) {
		return unpackTar(ctx, j, br)
	}
	return writeImage(ctx, j, br)
}

// writeImage copies r into j.dst through a temporary file, renamed when
// whole, leaving holes for zero blocks, and returns dst's sha256. It
// stops at the cap.
func writeImage(ctx context.Context, j unpackJob, r io.Reader) (Digest, error) {
	tmp := j.dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return Digest{}, err
	}
	h := sha256.New()
	err = writeSparse(out, io.TeeReader(j.capped(ctx, r), h))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, j.dst)
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
	case "bzip2":
		return bzip2.NewReader(r), func() {}, nil
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

// Unpacked returns the plain image behind a local file: path itself when
// its content is neither compressed nor an archive, else a copy unpacked
// once into cacheDir under the same rules as a download (the cap
// maxUnpacked, free space, one disk image per archive, no link members,
// no member name leaving the archive). The copy is named by the source's
// path, size and modification time, so an edited source is unpacked
// again; concurrent callers take turns on its lock.
func Unpacked(ctx context.Context, path, cacheDir string, maxUnpacked int64, log func(string, ...any)) (string, error) {
	kind, err := sniffFile(path)
	if err != nil || kind == "" {
		return path, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	key := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", path, st.Size(), st.ModTime().UnixNano()))
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("image cache: %w", err)
	}
	dst := filepath.Join(cacheDir, fmt.Sprintf("unpacked-%x-%s", key[:8], unpackedName(safeName(filepath.Base(path)))))
	unlock, err := lockFile(ctx, dst+".lock", nil)
	if err != nil {
		return "", fmt.Errorf("image cache: %w", err)
	}
	defer unlock()
	if fi, err := os.Stat(dst); err == nil && fi.Mode().IsRegular() {
		return dst, nil
	}
	if log == nil {
		log = func(string, ...any) {}
	}
	log("unpacking image", "packing", kind, "source", path, "path", dst)
	start := time.Now()
	if _, err := unpackFile(ctx, unpackJob{src: path, dst: dst, limit: maxUnpacked, what: "unpacking " + path, log: log}); err != nil {
		return "", fmt.Errorf("unpacking %s (%s): %w", path, kind, err)
	}
	log("unpacked image", "path", dst, "seconds", time.Since(start).Seconds())
	return dst, syncDir(cacheDir)
}
