package webconsole

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/vmrunner/vmrunner/certs"
	"github.com/vmrunner/vmrunner/controller"
)

const (
	user = "viewer"
	pass = "web-secret-42"
)

// fakeVM answers DialDisplay with an RFB greeting and then echoes, like a
// tiny QEMU; Power says whether there is a display.
type fakeVM struct {
	mu    sync.Mutex
	power controller.PowerState
	dials int
}

func (f *fakeVM) Status() controller.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return controller.Status{Power: f.power}
}

func (f *fakeVM) set(p controller.PowerState) {
	f.mu.Lock()
	f.power = p
	f.mu.Unlock()
}

func (f *fakeVM) DialDisplay(ctx context.Context) (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.power != controller.Running {
		return nil, fmt.Errorf("display: %w", controller.ErrState)
	}
	f.dials++
	a, b := net.Pipe()
	go func() {
		defer b.Close()
		if _, err := b.Write([]byte("RFB 003.008\n")); err != nil {
			return
		}
		io.Copy(b, b)
	}()
	return a, nil
}

type fixture struct {
	srv  *Server
	vm   *fakeVM
	base string
	http *http.Client
	logs *observer.ObservedLogs
}

func start(t testing.TB) *fixture { return startWith(t, &fakeVM{power: controller.Running}) }

func startWith(t testing.TB, vm VM) *fixture {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"vnc.html": "<html>noVNC</html>", "app/ui.js": "// ui", "core/rfb.js": "// rfb"} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cert, _, err := certs.Load(certs.Source{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	s, err := Listen(Config{Addr: "127.0.0.1:0", Username: user, Password: pass, Dir: dir,
		TLS: certs.ServerConfig(cert), VM: vm, Log: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	fake, _ := vm.(*fakeVM)
	return &fixture{srv: s, vm: fake, base: "https://" + s.Addr().String(), http: client, logs: logs}
}

func (f *fixture) get(t *testing.T, path, u, p string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", f.base+path, nil)
	if u != "" || p != "" {
		req.SetBasicAuth(u, p)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (f *fixture) dial(t *testing.T, u, p, origin string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if u != "" || p != "" {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(u, p)
		h.Set("Authorization", req.Header.Get("Authorization"))
	}
	if origin != "" {
		h.Set("Origin", origin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return websocket.Dial(ctx, "wss://"+f.srv.Addr().String()+wsPath, &websocket.DialOptions{
		HTTPClient: f.http, HTTPHeader: h, Subprotocols: []string{"binary"}})
}

func TestAuthRequired(t *testing.T) {
	f := start(t)
	for _, c := range []struct{ path, u, p string }{
		{"/", "", ""}, {"/vnc.html", "", ""}, {"/core/rfb.js", "", ""}, {wsPath, "", ""},
		{"/", user, "wrong"}, {"/vnc.html", "someone", pass}, {"/", user, ""}, {"/", user, pass + "x"},
		{"/", "", pass},
	} {
		resp := f.get(t, c.path, c.u, c.p)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic realm=") {
			t.Errorf("%s as %q/%q: %s, WWW-Authenticate %q; want 401 with a Basic challenge", c.path, c.u, c.p, resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if _, resp, err := f.dial(t, "", "", ""); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("WebSocket without login: err %v, resp %v; want 401", err, resp)
	}
	if _, resp, err := f.dial(t, user, "nope", ""); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("WebSocket with a wrong password: err %v, resp %v; want 401", err, resp)
	}
	if f.vm.dials != 0 {
		t.Errorf("refused requests reached the display %d times", f.vm.dials)
	}
}

func TestPagesWithLogin(t *testing.T) {
	f := start(t)
	resp := f.get(t, "/", user, pass)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != viewerURL {
		t.Errorf("/: %s to %q, want 302 to %q", resp.Status, resp.Header.Get("Location"), viewerURL)
	}
	if strings.Contains(viewerURL, pass) || strings.Contains(strings.ToLower(viewerURL), "password") {
		t.Errorf("the viewer URL carries a password: %s", viewerURL)
	}
	resp = f.get(t, "/vnc.html", user, pass)
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "<html>noVNC</html>" {
		t.Errorf("/vnc.html: %s %q", resp.Status, b)
	}
	for _, p := range []string{"/app/", "/core", "/%2e%2e/%2e%2e/etc/passwd", "/app/..%2f..%2f..%2fetc/passwd", "/missing.js"} {
		if resp := f.get(t, p, user, pass); resp.StatusCode/100 != 4 {
			t.Errorf("%s: %s, want a 4xx (no listings, nothing outside NOVNC_DIR)", p, resp.Status)
		}
	}
}

func TestVMOff(t *testing.T) {
	f := start(t)
	f.vm.set(controller.Off)
	resp := f.get(t, "/", user, pass)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "The VM is off") {
		t.Errorf("/ with the VM off: %s %q, want 503 saying so", resp.Status, b)
	}
	// A viewer that connects now waits, and sees the screen once the VM
	// runs again: no restart of the web console, no reload of the page.
	c, _, err := f.dial(t, user, pass, "")
	if err != nil {
		t.Fatalf("WebSocket with the VM off: %v", err)
	}
	defer c.CloseNow()
	time.Sleep(1500 * time.Millisecond)
	f.vm.set(controller.Running)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	greet := make([]byte, 12)
	if _, err := io.ReadFull(websocket.NetConn(ctx, c, websocket.MessageBinary), greet); err != nil || string(greet) != "RFB 003.008\n" {
		t.Errorf("after power on: %q, %v", greet, err)
	}
	if resp := f.get(t, "/", user, pass); resp.StatusCode != http.StatusFound {
		t.Errorf("/ after power on: %s", resp.Status)
	}
}

func TestBridge(t *testing.T) {
	f := start(t)
	c, resp, err := f.dial(t, user, pass, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "binary" || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("subprotocol %q, status %s", c.Subprotocol(), resp.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn := websocket.NetConn(ctx, c, websocket.MessageBinary)
	greet := make([]byte, 12)
	if _, err := io.ReadFull(conn, greet); err != nil || string(greet) != "RFB 003.008\n" {
		t.Fatalf("greeting %q, %v", greet, err)
	}
	msg := []byte("\x04\x01\x00\x00\x00\x00\xff\x0d") // a KeyEvent: press Return
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, back); err != nil || string(back) != string(msg) {
		t.Errorf("echo %q, %v", back, err)
	}
}

func TestCrossOriginWebSocketRefused(t *testing.T) {
	f := start(t)
	if _, resp, err := f.dial(t, user, pass, "https://evil.example"); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin WebSocket with good credentials: %v %v, want 403", err, resp)
	}
	c, _, err := f.dial(t, user, pass, f.base)
	if err != nil {
		t.Fatalf("same-origin WebSocket: %v", err)
	}
	c.CloseNow()
}

func TestSetPassword(t *testing.T) {
	f := start(t)
	f.srv.SetPassword("changed-pw")
	if resp := f.get(t, "/vnc.html", user, pass); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("old password after SetPassword: %s", resp.Status)
	}
	if resp := f.get(t, "/vnc.html", user, "changed-pw"); resp.StatusCode != 200 {
		t.Errorf("new password: %s", resp.Status)
	}
}

func TestCloseEndsViewers(t *testing.T) {
	f := start(t)
	c, _, err := f.dial(t, user, pass, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	done := make(chan error, 1)
	go func() { done <- f.srv.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for a viewer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Error("the viewer's connection outlived Close")
			}
			return
		}
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	f := start(t)
	f.get(t, "/vnc.html?password="+pass, user, pass)
	f.get(t, "/", user, "guess-"+pass)
	if c, _, err := f.dial(t, user, pass, ""); err == nil {
		c.Close(websocket.StatusNormalClosure, "")
	}
	time.Sleep(100 * time.Millisecond)
	if f.logs.Len() == 0 {
		t.Fatal("no request log")
	}
	for _, e := range f.logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, pass) || strings.Contains(line, "Basic ") {
			t.Errorf("log line holds a secret: %s", line)
		}
	}
}

// streamVM's display sends frame-sized chunks for every byte it reads: the
// bridge's own ceiling, with no QEMU behind it.
type streamVM struct{ frame []byte }

func (streamVM) Status() controller.Status { return controller.Status{Power: controller.Running} }

func (s streamVM) DialDisplay(context.Context) (net.Conn, error) {
	a, b := net.Pipe()
	go func() {
		defer b.Close()
		one := make([]byte, 1)
		for {
			if _, err := b.Read(one); err != nil {
				return
			}
			if _, err := b.Write(s.frame); err != nil {
				return
			}
		}
	}()
	return a, nil
}

// BenchmarkBridge: one 720x400x32bpp raw frame (1.15 MB) per request,
// through TLS and WebSocket framing on loopback.
func BenchmarkBridge(b *testing.B) {
	f := startWith(b, streamVM{frame: make([]byte, 720*400*4)})
	h := http.Header{}
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	h.Set("Authorization", req.Header.Get("Authorization"))
	c, _, err := websocket.Dial(context.Background(), "wss://"+f.srv.Addr().String()+wsPath, &websocket.DialOptions{HTTPClient: f.http, HTTPHeader: h})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(-1)
	conn := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
	b.SetBytes(720 * 400 * 4)
	for b.Loop() {
		conn.Write([]byte{1})
		if _, err := io.CopyN(io.Discard, conn, 720*400*4); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzBasicAuth: no Authorization header but the exact user and password
// is let through.
func FuzzBasicAuth(f *testing.F) {
	good := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	for _, seed := range []string{good, "", "Basic ", "Basic Og==", "basic " + good[6:], good + "=", "Bearer x",
		"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass+"\x00")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte(user+"::"+pass))} {
		f.Add(seed)
	}
	s := &Server{user: sha256.Sum256([]byte(user))}
	s.SetPassword(pass)
	h := s.authed(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", header)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		u, p, ok := r.BasicAuth()
		admitted := w.Code == http.StatusTeapot
		if admitted != (ok && u == user && p == pass) {
			t.Errorf("Authorization %q: admitted %v", header, admitted)
		}
		if !admitted && (w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") == "") {
			t.Errorf("refusal is %d without a challenge", w.Code)
		}
	})
}
