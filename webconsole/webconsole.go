// Package webconsole serves the VM's screen in a browser: noVNC's files and
// a WebSocket bridged to QEMU's VNC socket, over HTTPS behind HTTP basic
// auth. QEMU's own WebSocket cannot listen on a unix socket (QEMU 7.2), so
// the WebSocket ends here and plain RFB goes on to QEMU.
package webconsole

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/controller"
)

// VM is what the web console needs of the controller.
type VM interface {
	Status() controller.Status
	DialDisplay(ctx context.Context) (net.Conn, error)
}

// Config is a web console's setting.
type Config struct {
	Addr     string // listen address, e.g. ":6080"
	Username string
	Password string
	Dir      string // noVNC's files: vnc.html, app/, core/, vendor/
	TLS      *tls.Config
	VM       VM
	Log      *zap.Logger
}

// Limits of the service; a console has a handful of viewers.
const (
	MaxViewers   = 16
	wsPath       = "/websockify"    // noVNC's default path
	maxClientMsg = 64 << 10         // RFB client messages are tiny; cut-text is the largest
	maxWait      = 10 * time.Minute // a viewer waits this long for the VM to run
)

// viewerURL is where / leads: noVNC connects at once, scales the screen to
// the window and comes back after a power cycle. No password is in it:
// QEMU's socket has no VNC auth, the basic auth in front is the lock.
const viewerURL = "/vnc.html?autoconnect=1&reconnect=1&reconnect_delay=2000&resize=scale&path=" + "websockify"

// Server is a running web console.
type Server struct {
	cfg     Config
	srv     *http.Server
	ln      net.Listener
	user    [32]byte
	pass    atomic.Pointer[[32]byte]
	viewers chan struct{}
	ctx     context.Context // ends the bridges on Close
	cancel  context.CancelFunc
	mu      sync.Mutex // guards closed and wg.Add against Close's wg.Wait
	closed  bool
	wg      sync.WaitGroup
}

// Listen checks the noVNC folder and opens the listener; Serve then runs.
func Listen(cfg Config) (*Server, error) {
	if _, err := os.Stat(filepath.Join(cfg.Dir, "vnc.html")); err != nil {
		return nil, fmt.Errorf("noVNC files in %s: %w", cfg.Dir, err)
	}
	if cfg.TLS == nil {
		return nil, errors.New("the web console needs a TLS certificate")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("web console: %w", err)
	}
	s := &Server{cfg: cfg, ln: ln, user: sha256.Sum256([]byte(cfg.Username)), viewers: make(chan struct{}, MaxViewers)}
	s.SetPassword(cfg.Password)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.srv = &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         cfg.TLS,
		ReadHeaderTimeout: 10 * time.Second,
		// No ReadTimeout/WriteTimeout: their deadlines would stay on a
		// hijacked WebSocket connection and cut a viewer off. Requests
		// other than the WebSocket are small files.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       zap.NewStdLog(cfg.Log.With(zap.String("service", "webconsole"))),
	}
	return s, nil
}

// Addr is the address the console listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers until Close.
func (s *Server) Serve() error {
	err := s.srv.ServeTLS(s.ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the listener and ends every viewer's connection.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.srv.Close()
	s.cancel()
	s.wg.Wait()
	return err
}

// SetPassword changes the basic-auth password for the next requests.
func (s *Server) SetPassword(pw string) {
	h := sha256.Sum256([]byte(pw))
	s.pass.Store(&h)
}

// Handler is the console's HTTP handler (every path needs basic auth).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET "+wsPath, s.websocket)
	files := http.FileServer(noDirs{http.Dir(s.cfg.Dir)})
	mux.Handle("GET /", files)
	return s.logged(s.authed(mux))
}

// authed admits a request with the right user and password. Both are
// compared as SHA-256 sums in constant time, so neither their content nor
// their length shows in the answer's timing.
func (s *Server) authed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		uh, ph := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		good := subtle.ConstantTimeCompare(uh[:], s.user[:]) & subtle.ConstantTimeCompare(ph[:], s.pass.Load()[:])
		if !ok || good != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="vmrunner console", charset="UTF-8"`)
			http.Error(w, "401 login required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) running() (bool, controller.PowerState) {
	st := s.cfg.VM.Status()
	return st.Power == controller.Running || st.Power == controller.Paused, st.Power
}

// index leads to the viewer, or says why there is nothing to see.
func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	if ok, power := s.running(); !ok {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `<!DOCTYPE html><html><head><meta http-equiv="refresh" content="5"><title>VM is %[1]s</title></head>`+
			`<body><p>The VM is %[1]s: there is no screen to show. This page looks again every 5 seconds.</p></body></html>`,
			html.EscapeString(string(power)))
		return
	}
	http.Redirect(w, r, viewerURL, http.StatusFound)
}

// websocket bridges one viewer to QEMU's display socket.
func (s *Server) websocket(w http.ResponseWriter, r *http.Request) {
	select {
	case s.viewers <- struct{}{}:
		defer func() { <-s.viewers }()
	default:
		http.Error(w, fmt.Sprintf("503 already %d viewers", MaxViewers), http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	vnc, err := s.cfg.VM.DialDisplay(ctx)
	if err != nil && !errors.Is(err, controller.ErrState) {
		http.Error(w, "502 the VM's screen is not available", http.StatusBadGateway)
		s.cfg.Log.Warn("dialing the display", zap.String("service", "webconsole"), zap.Error(err))
		return
	}
	defer func() {
		if vnc != nil {
			vnc.Close()
		}
	}()
	// Accept checks that the Origin is this host: a page elsewhere must not
	// reach the screen with the credentials the browser has cached.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"binary"}})
	if err != nil {
		return // Accept has answered
	}
	c.SetReadLimit(maxClientMsg)
	if !s.track() {
		c.Close(websocket.StatusGoingAway, "the web console is closing")
		return
	}
	defer s.wg.Done()
	ws := websocket.NetConn(ctx, c, websocket.MessageBinary)
	defer ws.Close()
	if vnc == nil {
		// The VM is off. noVNC retries only after a clean close, and a
		// close before the RFB greeting is a failure to it, so the viewer
		// waits here, "connecting", until the VM runs again.
		if vnc, err = s.waitDisplay(ctx); err != nil {
			return
		}
	}

	start := time.Now()
	var in int64
	done := make(chan struct{})
	go func() {
		in, _ = io.Copy(vnc, ws)
		// The viewer left: end QEMU's side, which ends the other copy.
		vnc.Close()
		close(done)
	}()
	out, _ := io.Copy(ws, vnc)
	ws.Close()
	<-done
	s.cfg.Log.Info("viewer disconnected", zap.String("service", "webconsole"), zap.String("remote", r.RemoteAddr),
		zap.Int64("bytes_to_viewer", out), zap.Int64("bytes_from_viewer", in), zap.Duration("duration", time.Since(start)))
}

// track counts a bridge for Close to wait for, unless Close has begun.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// waitDisplay dials the display once a second until the VM runs again,
// at most maxWait.
func (s *Server) waitDisplay(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, maxWait)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		c, err := s.cfg.VM.DialDisplay(ctx)
		if !errors.Is(err, controller.ErrState) {
			return c, err
		}
	}
}

// noDirs serves files only: noVNC's folder is not listed.
type noDirs struct{ fs http.FileSystem }

func (n noDirs) Open(name string) (http.File, error) {
	f, err := n.fs.Open(name)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || st.IsDir() {
		f.Close()
		return nil, os.ErrNotExist
	}
	return f, nil
}

// logged writes one line per request: never the Authorization header or
// the query string.
func (s *Server) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.cfg.Log.Info("request", zap.String("service", "webconsole"), zap.String("remote", r.RemoteAddr),
			zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Int("status", rec.status),
			zap.Duration("duration", time.Since(start)))
	})
}

// statusRecorder remembers the status; Unwrap lets Accept hijack.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
