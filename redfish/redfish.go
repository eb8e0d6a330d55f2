// Package redfish is vmrunner's BMC: a Redfish service over one VM, enough
// for OpenStack Ironic (driver redfish, redfish-virtual-media boot), Metal3
// and redfishtool to enrol, power, boot and feed it virtual media. It sees
// the VM only through controller.API, so it is tested with a fake.
package redfish

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/certs"
	"github.com/vmrunner/vmrunner/controller"
)

// Options configure the service.
type Options struct {
	Username, Password string
	SystemID           string // the id in /redfish/v1/Systems/ID
	Version            string // vmrunner's version, the manager's FirmwareVersion
	Log                *zap.Logger
	// SessionTimeout ends a session unused this long; 0 means 30 minutes.
	SessionTimeout time.Duration
	// MaxSessions caps open sessions; 0 means 64.
	MaxSessions int
	// Now is the clock (tests move it); nil means time.Now.
	Now func() time.Time
}

// maxBody caps a request body: every body this service takes is a few
// hundred bytes, and a larger one is refused before it is parsed.
const maxBody = 1 << 20

type service struct {
	api      controller.API
	opt      Options
	userHash [32]byte
	passHash [32]byte
	sessions *sessions
	paths    paths
	// patchMu makes a PATCH's If-Match check and its change one step, so
	// two clients holding the same ETag cannot both succeed.
	patchMu sync.Mutex
	fails   *backoff
	sleep   func(context.Context, time.Duration) error // tests replace it
}

// New returns the Redfish service as an http.Handler; Serve puts it on
// HTTPS. It never logs passwords or session tokens.
func New(api controller.API, opt Options) http.Handler {
	if opt.Log == nil {
		opt.Log = zap.NewNop()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.SessionTimeout <= 0 {
		opt.SessionTimeout = 30 * time.Minute
	}
	if opt.MaxSessions <= 0 {
		opt.MaxSessions = 64
	}
	return &service{
		api:      api,
		opt:      opt,
		userHash: sha256.Sum256([]byte(opt.Username)),
		passHash: sha256.Sum256([]byte(opt.Password)),
		sessions: newSessions(opt.SessionTimeout, opt.MaxSessions, opt.Now),
		paths:    newPaths(opt.SystemID),
		fails:    newBackoff(opt.Now),
		sleep:    sleep,
	}
}

// Serve answers HTTPS with h on l until ctx ends, then lets running
// requests finish for a few seconds.
func Serve(ctx context.Context, l net.Listener, h http.Handler, cert tls.Certificate, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         certs.ServerConfig(cert),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// InsertMedia answers after the image is fetched, which may take
		// minutes for an installer ISO.
		WriteTimeout:   15 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 32 << 10,
		ErrorLog:       zap.NewStdLog(log.With(zap.String("from", "redfish http"))),
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	err := srv.ServeTLS(l, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// statusRecorder keeps the status for the request's log line.
type statusRecorder struct {
	http.ResponseWriter
	status int
	user   string // set by a login, which needs no credentials beforehand
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	user := s.serve(rec, r)
	if user == "" {
		user = rec.user
	}
	if user == "" {
		user = "-"
	}
	path := r.URL.Path
	if len(path) > 200 {
		path = path[:200] + "…"
	}
	s.opt.Log.Info("redfish request",
		zap.String("method", r.Method), zap.String("path", path), zap.Int("status", rec.status),
		zap.String("user", user), zap.Duration("duration", time.Since(start)), zap.String("remote", r.RemoteAddr))
}

// serve answers one request and returns the user it was made as.
func (s *service) serve(w http.ResponseWriter, r *http.Request) (user string) {
	h := w.Header()
	h.Set("OData-Version", "4.0")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	}
	path := r.URL.Path
	if path != "/" {
		path = strings.TrimSuffix(path, "/")
	}
	// Only the documents that say what the service is, and logging in,
	// are open; everything else asks for credentials before it says
	// whether a resource exists.
	if !s.public(path, r.Method) {
		var err *rfError
		if user, err = s.authenticate(r); err != nil {
			if err.status == http.StatusUnauthorized {
				h.Set("WWW-Authenticate", `Basic realm="vmrunner Redfish", charset="UTF-8"`)
			}
			writeError(w, err)
			return ""
		}
	}
	if path == s.paths.root+"/$metadata" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			writeError(w, errMethod(r.Method, r.URL.Path))
			return user
		}
		writeMetadata(w)
		return user
	}
	res := s.route(path)
	if res == nil {
		writeError(w, errNotFound(r.URL.Path))
		return user
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	var err *rfError
	switch {
	case method == http.MethodGet && res.get != nil:
		err = s.writeDoc(w, http.StatusOK, res.get)
	case method == http.MethodPatch && res.patch != nil:
		err = s.doPatch(w, r, res)
	case method == http.MethodPost && res.post != nil:
		err = res.post(w, r)
	case method == http.MethodDelete && res.delete != nil:
		err = res.delete(w, r)
	default:
		h.Set("Allow", strings.Join(res.methods(), ", "))
		err = errMethod(r.Method, r.URL.Path)
	}
	if err != nil {
		writeError(w, err)
	}
	return user
}

func (s *service) public(path, method string) bool {
	switch path {
	case "/redfish", s.paths.root, s.paths.root + "/$metadata", s.paths.root + "/odata":
		return method == http.MethodGet || method == http.MethodHead
	case s.paths.sessions:
		return method == http.MethodPost
	}
	return false
}

// authenticate accepts a session token (X-Auth-Token) or HTTP basic auth.
func (s *service) authenticate(r *http.Request) (string, *rfError) {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		if u, ok := s.sessions.lookup(tok); ok {
			return u, nil
		}
		return "", errNoSession()
	}
	u, p, ok := r.BasicAuth()
	if !ok {
		return "", errNoSession()
	}
	if err := s.checkPassword(r, u, p); err != nil {
		return "", err
	}
	return u, nil
}

// checkPassword is every password check, basic auth and logins alike. The
// client first waits its turn (see backoff); a failure is counted, and
// logged without what was tried when the client's checks start to be
// spaced and at each doubling after.
func (s *service) checkPassword(r *http.Request, user, pass string) *rfError {
	client := clientKey(r.RemoteAddr)
	wait, ok := s.fails.turn(client)
	if !ok {
		return errBackoff(wait)
	}
	if wait > 0 {
		if err := s.sleep(r.Context(), wait); err != nil {
			s.fails.abandoned(client)
			return errBackoff(wait)
		}
	}
	if s.credentialsOK(user, pass) {
		s.fails.succeeded(client)
		return nil
	}
	if n := s.fails.failed(client); n == s.fails.free || n > s.fails.free && n&(n-1) == 0 {
		s.opt.Log.Warn("redfish failed logins: this client's password checks are now spaced",
			zap.String("client", client), zap.Int("failures", n), zap.Duration("spacing", s.fails.delay(n)))
	}
	return errNoSession()
}

// credentialsOK compares hashes in constant time, so neither the user
// name nor the password leaks through timing, whatever their lengths.
func (s *service) credentialsOK(user, pass string) bool {
	uh, ph := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	return subtle.ConstantTimeCompare(uh[:], s.userHash[:])&subtle.ConstantTimeCompare(ph[:], s.passHash[:]) == 1
}
