package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// LimitError is a download or an unpacking that outgrew its cap.
type LimitError struct {
	Var   string // DOWNLOAD_MAX_SIZE or EXTRACT_MAX_SIZE
	Limit int64
	What  string // e.g. "the download of URL"
	Size  int64  // the size announced or reached
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s is over %d bytes (%s=%d)", e.What, e.Size, e.Var, e.Limit)
}

// SpaceError is a download or an unpacking that would not fit.
type SpaceError struct {
	Dir        string // the cache folder, in DATA_DIR
	What       string
	Need, Free int64
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("not enough space in DATA_DIR for %s: it needs %s, the file system of %s has %s free",
		e.What, humanBytes(e.Need), e.Dir, humanBytes(e.Free))
}

func humanBytes(n int64) string {
	const unit = 1 << 10
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// freeSpace is what an unprivileged writer may still put in dir's file
// system.
var freeSpace = func(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// checkSpace refuses to write need more bytes into dir when they do not fit.
func checkSpace(dir, what string, need int64) error {
	free, err := freeSpace(dir)
	if err != nil || need <= free {
		return nil // a failed statfs leaves the write itself to fail
	}
	return &SpaceError{Dir: dir, What: what, Need: need, Free: free}
}

// checkRedirect keeps a download on http(s) and off plain http once it
// went https; what it refuses is the configuration's to fix, so it is an
// ErrBadURL, never retried.
func checkRedirect(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		switch req.URL.Scheme {
		case "https":
		case "http":
			for _, v := range via {
				if v.URL.Scheme == "https" {
					return fmt.Errorf("%w: %s redirects from https to plain http (%s)", ErrBadURL, via[0].URL, req.URL.Redacted())
				}
			}
		default:
			return fmt.Errorf("%w: %s redirects to %q, not http(s)", ErrBadURL, via[0].URL, req.URL.Scheme+":")
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return fmt.Errorf("%w: %s: stopped after 10 redirects", ErrBadURL, via[0].URL)
		}
		return nil
	}
}

// clientError classifies a failed request: a refused redirect ends the
// fetch, anything else may be the network's and is tried again.
func clientError(err error) error {
	if errors.Is(err, ErrBadURL) {
		return err
	}
	return retryable(err)
}

// cappedReader fails once more than limit bytes came through.
type cappedReader struct {
	r     io.Reader
	n     int64
	limit int64
	err   func(n int64) error
}

func (c *cappedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.limit > 0 && c.n > c.limit {
		return 0, c.err(c.n)
	}
	return n, err
}

// unpackedSize is what a compressed file says it unpacks to, when it says
// (xz's index, zstd's frame header, gzip's size modulo 4 GiB): a hint to
// check free space against before unpacking; the cap is enforced on the
// bytes themselves.
func unpackedSize(kind string, f *os.File) (int64, bool) {
	fi, err := f.Stat()
	if err != nil {
		return 0, false
	}
	size := fi.Size()
	switch kind {
	case "xz":
		return xzUnpackedSize(f, size)
	case "gzip":
		var b [4]byte
		if size < 18 {
			return 0, false
		}
		if _, err := f.ReadAt(b[:], size-4); err != nil {
			return 0, false
		}
		return int64(binary.LittleEndian.Uint32(b[:])), true
	case "zstd":
		var b [zstd.HeaderMaxSize]byte
		n, _ := f.ReadAt(b[:], 0)
		var h zstd.Header
		if h.Decode(b[:n]) != nil || !h.HasFCS {
			return 0, false
		}
		return int64(min(h.FrameContentSize, 1<<62)), true
	}
	return 0, false
}

// xzUnpackedSize sums the uncompressed sizes in the index of the last
// stream of an .xz file (one stream in practice).
func xzUnpackedSize(f io.ReaderAt, size int64) (int64, bool) {
	var footer [12]byte
	if size < 24 {
		return 0, false
	}
	if _, err := f.ReadAt(footer[:], size-12); err != nil || string(footer[10:]) != "YZ" {
		return 0, false
	}
	indexSize := (int64(binary.LittleEndian.Uint32(footer[4:8])) + 1) * 4
	if indexSize > 1<<20 || indexSize > size-24 {
		return 0, false
	}
	index := make([]byte, indexSize)
	if _, err := f.ReadAt(index, size-12-indexSize); err != nil || index[0] != 0 {
		return 0, false
	}
	r := bytes.NewReader(index[1:])
	records, err := binary.ReadUvarint(r)
	if err != nil || records > uint64(indexSize) {
		return 0, false
	}
	var total uint64
	for range records {
		if _, err := binary.ReadUvarint(r); err != nil { // unpadded size
			return 0, false
		}
		n, err := binary.ReadUvarint(r)
		if err != nil || n > 1<<62 || total+n > 1<<62 {
			return 0, false
		}
		total += n
	}
	return int64(total), true
}
