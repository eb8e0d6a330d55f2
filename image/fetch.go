package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// FetchRequest says what to download and how to report on it.
type FetchRequest struct {
	URL         string
	SHA256      string // pinned digest (64 hex digits); wins over ChecksumURL
	ChecksumURL string // a SHA256SUMS-style file listing the URL's base name
	CacheDir    string // e.g. DATA_DIR/cache
	// MaxSize and MaxUnpacked cap the bytes the download and its unpacking
	// may write (DOWNLOAD_MAX_SIZE, EXTRACT_MAX_SIZE); 0: no cap.
	MaxSize, MaxUnpacked int64

	// Progress is told the bytes downloaded and the total (-1 if unknown),
	// at most ten times a second and once at the end; see Bar and
	// LogProgress.
	Progress func(done, total int64)
	// Log receives events as a message and key/value pairs: zap's
	// (*SugaredLogger).Infow fits as it is.
	Log func(msg string, keysAndValues ...any)

	Client       *http.Client  // nil: one with proxy support from the environment
	Attempts     int           // failures in a row without progress before giving up; 0: 6
	Backoff      time.Duration // first retry delay, doubling up to 30 s; 0: 1 s
	StallTimeout time.Duration // a body silent this long is retried; 0: 60 s
}

// Fetch returns the path of a verified, unpacked copy of req.URL in
// req.CacheDir, downloading it if no such copy is there yet. A cached copy
// is trusted by its record (size and modification time as verified), so a
// start with a cached image reads no image data.
//
// Processes and goroutines sharing a cache directory take turns per URL:
// one downloads, the others wait and then return its result. A failed
// download leaves at most its resumable .part; a checksum mismatch not even
// that. Errors match ErrBadURL (the URL or checksum source is wrong: fix
// the configuration) or ErrChecksum (the data is not what was promised);
// others are network or disk faults.
func Fetch(ctx context.Context, req FetchRequest) (string, error) {
	f, err := newFetcher(req)
	if err != nil {
		return "", err
	}
	if p, ok := f.cached(); ok {
		f.log("using cached image", "url", req.URL, "path", p)
		return p, nil
	}
	if err := os.MkdirAll(req.CacheDir, 0o755); err != nil {
		return "", fmt.Errorf("image cache: %w", err)
	}
	unlock, err := lockFile(ctx, f.entry.lock(), func() {
		f.log("waiting for another download of the same image", "url", req.URL)
	})
	if err != nil {
		return "", fmt.Errorf("image cache: %w", err)
	}
	defer unlock()
	if p, ok := f.cached(); ok {
		return p, nil
	}
	if p, ok := f.rehash(ctx); ok {
		return p, nil
	}
	return f.fetch(ctx)
}

type fetcher struct {
	req      FetchRequest
	entry    entry
	pinned   Digest
	client   *http.Client
	log      func(string, ...any)
	progress func(done, total int64)
	attempts int
	backoff  time.Duration
	stall    time.Duration
}

// Verifiable tells whether what req fetches can be trusted: it comes
// over https, or a digest that did not travel with it (pinned, or in a
// checksum file fetched over https) vouches for it.
func Verifiable(req FetchRequest) bool {
	return strings.HasPrefix(req.URL, "https://") || req.SHA256 != "" || strings.HasPrefix(req.ChecksumURL, "https://")
}

func newFetcher(req FetchRequest) (*fetcher, error) {
	if err := checkURL(req.URL); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	if !Verifiable(req) {
		return nil, fmt.Errorf("%w: %s is plain http without a digest: use https, or give its sha256 (BOOT_FROM_SHA256)", ErrBadURL, req.URL)
	}
	if req.ChecksumURL != "" {
		if err := checkURL(req.ChecksumURL); err != nil {
			return nil, fmt.Errorf("%w: checksum file: %v", ErrBadURL, err)
		}
	}
	if req.CacheDir == "" {
		return nil, errors.New("image cache: no cache directory given")
	}
	f := &fetcher{req: req, entry: newEntry(req.CacheDir, req.URL), client: req.Client, log: req.Log,
		attempts: req.Attempts, backoff: req.Backoff, stall: req.StallTimeout}
	if req.SHA256 != "" {
		d, err := ParseSHA256(req.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadURL, err)
		}
		f.pinned = d
	}
	if f.client == nil {
		f.client = defaultClient
	}
	c := *f.client
	c.CheckRedirect = checkRedirect(c.CheckRedirect)
	f.client = &c
	if f.log == nil {
		f.log = func(string, ...any) {}
	}
	f.progress = throttle(req.Progress, 100*time.Millisecond)
	if f.attempts <= 0 {
		f.attempts = 6
	}
	if f.backoff <= 0 {
		f.backoff = time.Second
	}
	if f.stall <= 0 {
		f.stall = time.Minute
	}
	return f, nil
}

// defaultClient has no overall timeout (images take minutes); the stall
// watchdog stands in for one.
var defaultClient = &http.Client{Transport: http.DefaultTransport}

// cached is the fast path: one small JSON read and one stat.
func (f *fetcher) cached() (string, bool) {
	r, err := readRecord(f.entry.record())
	if err != nil || !f.accepts(r) {
		return "", false
	}
	p := filepath.Join(f.req.CacheDir, r.Image)
	fi, err := os.Stat(p)
	if err != nil || !r.fresh(fi) {
		return "", false
	}
	return p, true
}

// accepts tells whether a recorded download is the one asked for: any
// verified copy serves when the checksum comes from a file (which may
// have moved on upstream; the cache keeps what VMs were made from), while
// a pinned digest must be the recorded one.
func (f *fetcher) accepts(r record) bool {
	return r.URL == f.req.URL && r.Image != "" && r.Image == filepath.Base(r.Image) &&
		(f.pinned.Hex == "" || r.Digest == f.pinned)
}

// rehash trusts a cached image whose time no longer matches its record
// (the cache was copied) once its content is hashed again.
func (f *fetcher) rehash(ctx context.Context) (string, bool) {
	r, err := readRecord(f.entry.record())
	if err != nil || !f.accepts(r) {
		return "", false
	}
	p := filepath.Join(f.req.CacheDir, r.Image)
	file, err := os.Open(p)
	if err != nil {
		return "", false
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil || fi.Size() != r.Size {
		return "", false
	}
	f.log("checking a cached image whose timestamp changed", "path", p)
	h := r.File.newHash()
	if _, err := io.Copy(h, ctxReader{ctx, file}); err != nil || fmt.Sprintf("%x", h.Sum(nil)) != r.File.Hex {
		return "", false
	}
	if err := writeRecord(f.entry.record(), r.stamp(fi)); err != nil {
		return "", false
	}
	return p, true
}

// fetch downloads, verifies and installs the image, under the entry lock.
func (f *fetcher) fetch(ctx context.Context) (string, error) {
	want, err := f.expected(ctx)
	if err != nil {
		return "", err
	}
	algo := want.Algo
	if algo == "" {
		algo = "sha256"
	}
	got, err := f.download(ctx, f.entry, algo)
	if err != nil {
		// What went over the cap is not worth resuming, nor is nothing.
		fi, serr := os.Stat(f.entry.part())
		if le := (*LimitError)(nil); errors.As(err, &le) || (serr == nil && fi.Size() == 0) {
			os.Remove(f.entry.part())
			os.Remove(f.entry.partMeta())
		}
		return "", err
	}
	if want.Hex != "" && got != want {
		os.Remove(f.entry.part())
		os.Remove(f.entry.partMeta())
		return "", &ChecksumError{URL: f.req.URL, Algo: algo, Want: want.Hex, Got: got.Hex}
	}
	if want.Hex == "" {
		f.log("image not verified: no checksum given", "url", f.req.URL, "sha256", got.Hex)
	}
	p, file, err := f.install(ctx, got)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	r := record{URL: f.req.URL, Digest: got, Image: filepath.Base(p), File: file}
	if err := writeRecord(f.entry.record(), r.stamp(fi)); err != nil {
		return "", fmt.Errorf("image cache: %w", err)
	}
	os.Remove(f.entry.partMeta())
	return p, nil
}

// expected is the digest to verify against: pinned, or looked up in the
// checksum file by the URL's base name; zero when neither is given.
func (f *fetcher) expected(ctx context.Context) (Digest, error) {
	if f.pinned.Hex != "" || f.req.ChecksumURL == "" {
		return f.pinned, nil
	}
	body, err := f.get(ctx, f.req.ChecksumURL, 16<<20)
	if err != nil {
		return Digest{}, err
	}
	u, _ := url.Parse(f.req.URL)
	name := path.Base(u.Path)
	sums := ParseChecksums(body)
	d, ok := sums.Lookup(name)
	if !ok {
		return Digest{}, fmt.Errorf("%w: checksum file %s lists no %s (it lists %d other files)",
			ErrBadURL, f.req.ChecksumURL, name, len(sums.Names()))
	}
	return d, nil
}

// get reads a small file whole, with the same retries as the download.
func (f *fetcher) get(ctx context.Context, u string, limit int64) ([]byte, error) {
	var body []byte
	err := retry(ctx, f.attempts, f.backoff, f.log, "GET "+u, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return false, err
		}
		resp, err := f.client.Do(req)
		if err != nil {
			return false, clientError(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			se := &StatusError{URL: u, Status: resp.StatusCode}
			if retryableStatus(resp.StatusCode) {
				return false, retryable(se)
			}
			return false, se
		}
		body, err = io.ReadAll(io.LimitReader(resp.Body, limit))
		if err != nil {
			return false, retryable(fmt.Errorf("GET %s: %w", u, err))
		}
		return false, nil
	})
	return body, err
}

// ctxReader stops a long local read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
