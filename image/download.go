package image

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// writeBackEvery is how much written data may wait in the page cache
// before its writeback is started.
const writeBackEvery = 8 << 20

// download brings one URL into the entry's .part: resuming what an earlier
// run left when the server can prove the file is unchanged (If-Range),
// hashing as the bytes arrive so that verifying costs no second read.
type download struct {
	*fetcher
	file      *os.File
	metaPath  string
	validator string // strong ETag or Last-Modified of the file being resumed
	sum       *asyncHash
	done      int64 // bytes in the .part, all of them hashed
	total     int64 // -1 while unknown
	high      int64 // most bytes ever held, to tell progress from going round
	flushed   int64 // bytes whose writeback has been started
}

// partMeta is kept beside the .part for a later run to resume with.
type partMeta struct {
	URL       string `json:"url"`
	Validator string `json:"validator"`
}

// download fetches the image into e's .part and returns its digest in algo.
func (f *fetcher) download(ctx context.Context, e entry, algo string) (Digest, error) {
	file, err := os.OpenFile(e.part(), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return Digest{}, err
	}
	defer file.Close()
	d := &download{fetcher: f, file: file, metaPath: e.partMeta(), total: -1,
		sum: newAsyncHash(Digest{Algo: algo}.newHash(), 4, 1<<20)}
	defer d.sum.stop()
	if err := d.resume(); err != nil {
		return Digest{}, err
	}
	f.log("downloading image", "url", f.req.URL, "from_byte", d.done)
	start := time.Now()
	if err := retry(ctx, f.attempts, f.backoff, f.log, "download "+f.req.URL, d.attempt); err != nil {
		return Digest{}, err
	}
	if err := file.Sync(); err != nil {
		return Digest{}, err
	}
	secs := time.Since(start).Seconds()
	f.log("downloaded image", "url", f.req.URL, "bytes", d.done, "seconds", secs,
		"mib_per_s", float64(d.done)/(1<<20)/max(secs, 1e-9))
	return Digest{Algo: algo, Hex: hex.EncodeToString(d.sum.wait().Sum(nil))}, nil
}

// resume keeps an earlier run's .part only if its server validator is
// known; its bytes are hashed again, a fraction of what fetching them costs.
func (d *download) resume() error {
	fi, err := d.file.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	var m partMeta
	b, err := os.ReadFile(d.metaPath)
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil || m.URL != d.req.URL || m.Validator == "" {
		return d.restart()
	}
	if _, err := io.Copy(d.sum.wait(), io.NewSectionReader(d.file, 0, fi.Size())); err != nil {
		return fmt.Errorf("reading %s: %w", d.file.Name(), err)
	}
	d.done, d.high, d.flushed, d.validator = fi.Size(), fi.Size(), fi.Size(), m.Validator
	return nil
}

func (d *download) restart() error {
	d.done, d.flushed = 0, 0
	d.sum.wait().Reset()
	return d.file.Truncate(0)
}

// attempt is one GET, from where the .part ends.
func (d *download) attempt(ctx context.Context) (bool, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, d.req.URL, nil)
	if err != nil {
		return false, err
	}
	// Our own Accept-Encoding stops the transport from gunzipping, which
	// would break byte offsets and the checksum.
	req.Header.Set("Accept-Encoding", "identity")
	if d.done > 0 && d.validator == "" {
		// Without a validator the rest might come from a newer file.
		if err := d.restart(); err != nil {
			return false, err
		}
	}
	if d.done > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", d.done))
		req.Header.Set("If-Range", d.validator)
	}
	// A server silent for the stall timeout, before the headers or
	// within the body, is cut off and tried again: a half-dead connection
	// would otherwise hang a start forever.
	var stalled atomic.Bool
	watchdog := time.AfterFunc(d.stall, func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()
	resp, err := d.client.Do(req)
	if err != nil {
		return false, d.netError(err, &stalled)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != d.done {
			return false, d.restartWith(fmt.Errorf("GET %s: asked for bytes from %d, got Content-Range %q",
				d.req.URL, d.done, resp.Header.Get("Content-Range")))
		}
		d.total = total
		if err := d.checkSize(); err != nil {
			return false, err
		}
	case http.StatusOK:
		if d.done > 0 {
			d.log("server sent the whole file instead of the rest; starting over", "url", d.req.URL, "had_bytes", d.done)
			if err := d.restart(); err != nil {
				return false, err
			}
		}
		d.total = resp.ContentLength
		if err := d.checkSize(); err != nil {
			return false, err
		}
		if err := d.saveMeta(resp.Header); err != nil {
			return false, err
		}
	case http.StatusRequestedRangeNotSatisfiable:
		if _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok && total == d.done {
			d.total = total
			return false, nil // the .part was already whole
		}
		return false, d.restartWith(&StatusError{URL: d.req.URL, Status: resp.StatusCode})
	default:
		se := &StatusError{URL: d.req.URL, Status: resp.StatusCode}
		if retryableStatus(resp.StatusCode) {
			return false, retryable(se)
		}
		return false, se
	}
	err = d.copy(resp.Body, watchdog, &stalled)
	progressed := d.done > d.high
	d.high = max(d.high, d.done)
	if err == nil && d.total >= 0 && d.done != d.total {
		err = retryable(fmt.Errorf("GET %s: body ended at byte %d of %d", d.req.URL, d.done, d.total))
	}
	return progressed, err
}

func (d *download) restartWith(err error) error {
	if rerr := d.restart(); rerr != nil {
		return rerr
	}
	return retryable(err)
}

// saveMeta records the validator a later resume must send as If-Range;
// weak ETags do not qualify (RFC 9110), Last-Modified then serves.
func (d *download) saveMeta(h http.Header) error {
	d.validator = h.Get("ETag")
	if d.validator == "" || strings.HasPrefix(d.validator, "W/") {
		d.validator = h.Get("Last-Modified")
	}
	if d.validator == "" {
		if err := os.Remove(d.metaPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.Marshal(partMeta{URL: d.req.URL, Validator: d.validator})
	if err != nil {
		return err
	}
	return writeFileAtomic(d.metaPath, b)
}

// copy appends the body to the .part, feeding the watchdog. Hashing runs
// beside it (asyncHash) and so does the disk (writeBack), so that the
// download goes as fast as the slowest of network, disk and hash rather
// than their sum.
func (d *download) copy(body io.Reader, watchdog *time.Timer, stalled *atomic.Bool) error {
	for {
		buf := d.sum.buffer()
		n, err := body.Read(buf)
		watchdog.Reset(d.stall)
		if max := d.req.MaxSize; max > 0 && d.done+int64(n) > max {
			d.sum.release(buf)
			return &LimitError{Var: "DOWNLOAD_MAX_SIZE", Limit: max, What: "the download of " + d.req.URL, Size: d.done + int64(n)}
		}
		if n > 0 {
			if _, werr := d.file.WriteAt(buf[:n], d.done); werr != nil {
				d.sum.release(buf)
				return fmt.Errorf("writing %s: %w", d.file.Name(), werr)
			}
			d.sum.write(buf[:n])
			d.done += int64(n)
			d.writeBack()
			d.progress(d.done, d.total)
		} else {
			d.sum.release(buf)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return d.netError(err, stalled)
		}
	}
}

// writeBack starts writing what arrived to disk now, instead of leaving
// it all to the fsync at the end: the image is then durable almost as soon
// as the last byte arrives.
func (d *download) writeBack() {
	if d.done-d.flushed < writeBackEvery {
		return
	}
	// Only a hint: on failure the final fsync still does the work.
	_ = unix.SyncFileRange(int(d.file.Fd()), d.flushed, d.done-d.flushed, unix.SYNC_FILE_RANGE_WRITE)
	d.flushed = d.done
}

// checkSize refuses an announced size over DOWNLOAD_MAX_SIZE or over the
// cache's free space, before a byte is written.
func (d *download) checkSize() error {
	if d.total < 0 {
		return nil
	}
	if max := d.req.MaxSize; max > 0 && d.total > max {
		return &LimitError{Var: "DOWNLOAD_MAX_SIZE", Limit: max, What: "the download of " + d.req.URL, Size: d.total}
	}
	return checkSpace(d.req.CacheDir, "the download of "+d.req.URL, d.total-d.done)
}

func (d *download) netError(err error, stalled *atomic.Bool) error {
	if errors.Is(err, ErrBadURL) {
		return err
	}
	if stalled.Load() {
		return retryable(fmt.Errorf("GET %s: no data for %s", d.req.URL, d.stall))
	}
	return retryable(fmt.Errorf("GET %s: %w", d.req.URL, err))
}

// parseContentRange reads "bytes START-END/TOTAL" and "bytes */TOTAL";
// start is -1 in the second form, total -1 when given as "*".
func parseContentRange(s string) (start, total int64, ok bool) {
	spec, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, false
	}
	rng, tot, ok := strings.Cut(spec, "/")
	if !ok {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || t < 0 {
			return 0, 0, false
		}
		total = t
	}
	if rng == "*" {
		return -1, total, total >= 0
	}
	first, _, ok := strings.Cut(rng, "-")
	start, err := strconv.ParseInt(first, 10, 64)
	if !ok || err != nil || start < 0 {
		return 0, 0, false
	}
	return start, total, true
}
