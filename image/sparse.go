package image

import (
	"bytes"
	"io"
	"os"
)

// sparseBlock is the unit checked for zeros: a file system block.
const sparseBlock = 4096

var zeroBlock [sparseBlock]byte

// writeSparse copies r into f, seeking over all-zero blocks instead of
// writing them: a raw image unpacked from .xz is mostly zeros, and holes
// cost no disk.
func writeSparse(f *os.File, r io.Reader) error {
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := fill(r, buf)
		if n > 0 {
			if werr := writeNonZero(f, buf[:n], off); werr != nil {
				return werr
			}
			off += int64(n)
		}
		if err == io.EOF {
			return f.Truncate(off) // a trailing hole still counts in the size
		}
		if err != nil {
			return err
		}
	}
}

// fill reads until buf is full or r ends. Unlike io.ReadFull it passes a
// reader's own io.ErrUnexpectedEOF on (a truncated archive), instead of
// making it from a clean end.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// writeNonZero writes the runs of p that are not whole zero blocks.
func writeNonZero(f *os.File, p []byte, off int64) error {
	start := -1 // beginning of the current run of data
	for i := 0; i < len(p); i += sparseBlock {
		b := p[i:min(i+sparseBlock, len(p))]
		zero := bytes.Equal(b, zeroBlock[:len(b)])
		switch {
		case !zero && start < 0:
			start = i
		case zero && start >= 0:
			if _, err := f.WriteAt(p[start:i], off+int64(start)); err != nil {
				return err
			}
			start = -1
		}
	}
	if start >= 0 {
		_, err := f.WriteAt(p[start:], off+int64(start))
		return err
	}
	return nil
}
