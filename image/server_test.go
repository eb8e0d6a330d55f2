package image

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The test servers speak https, since plain http without a digest is
// refused; httptest signs every TLS server with one certificate, which
// the default client is made to trust.
func init() {
	s := httptest.NewTLSServer(http.NotFoundHandler())
	defaultClient = &http.Client{Transport: s.Client().Transport}
	s.Close()
}

// fileServer serves files from memory on loopback, with the misbehaviours
// a behaviour asks for.
type fileServer struct {
	*httptest.Server
	behaviour
	mu    sync.Mutex
	files map[string][]byte

	gets   atomic.Int32 // GETs of files (not of missing paths)
	ranges []string     // Range header of each GET, "" when none
}

type behaviour struct {
	etag        string        // default "v1"
	noValidator bool          // send neither ETag nor Last-Modified
	cutFirst    int64         // the first GET of a file ends after this many body bytes
	ignoreRange bool          // answer 200 with the whole file to range requests
	fail        int32         // answer failStatus to this many GETs first
	failStatus  int           // default 503
	delay       time.Duration // pause per 32 KiB written
	slowAfter   int64         // body bytes sent at full speed before delay applies
}

// newFileServer starts the server once its behaviour is set, so handlers
// never race with the test writing it.
func newFileServer(t testing.TB, files map[string][]byte, b ...behaviour) *fileServer {
	s := &fileServer{files: files}
	if len(b) > 0 {
		s.behaviour = b[0]
	}
	if s.etag == "" {
		s.etag = `"v1"`
	}
	if s.failStatus == 0 {
		s.failStatus = http.StatusServiceUnavailable
	}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *fileServer) set(name string, data []byte, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[name] = data
	s.etag = etag
}

func (s *fileServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	data, ok := s.files[r.URL.Path]
	etag := s.etag
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	n := s.gets.Add(1)
	if n <= s.fail {
		http.Error(w, "try later", s.failStatus)
		return
	}
	if s.ignoreRange {
		r.Header.Del("Range")
	}
	out := &limitedWriter{ResponseWriter: w, delay: s.delay, slowAfter: s.slowAfter, cut: -1}
	if n == 1 && s.cutFirst > 0 {
		out.cut = s.cutFirst
	}
	modTime := time.Unix(1700000000, 0)
	if s.noValidator {
		modTime = time.Time{}
	} else {
		w.Header().Set("ETag", etag)
	}
	http.ServeContent(out, r, "", modTime, bytes.NewReader(data))
}

func (s *fileServer) rangeHeaders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

// limitedWriter slows a response down, or drops the connection after cut
// body bytes, as a failing network would.
type limitedWriter struct {
	http.ResponseWriter
	delay     time.Duration
	slowAfter int64
	cut       int64 // -1: never
	written   int64
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	if w.cut >= 0 && w.written+int64(len(p)) > w.cut {
		n, _ := w.ResponseWriter.Write(p[:w.cut-w.written])
		w.written += int64(n)
		w.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // closes the connection mid-body
	}
	if w.delay > 0 && w.written >= w.slowAfter {
		time.Sleep(w.delay)
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	return n, err
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
