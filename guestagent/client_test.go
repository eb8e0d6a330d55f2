package guestagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestExecSeparatesStreamsAndExitCode(t *testing.T) {
	a := newFake(t)
	var gotArgv []string
	a.run = func(p *fakeProc, argv []string, _ []byte) {
		gotArgv = argv
		p.write(1, "out\n")
		p.write(2, "err\n")
		p.exit(7)
	}
	c := a.client(Options{})
	var out, errb bytes.Buffer
	res, err := c.Exec(ctxT(t, 10*time.Second), Command{Path: "sh", Args: []string{"-c", "echo out; echo err >&2; exit 7"}, Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 7 || res.Signal != 0 {
		t.Errorf("result %+v, want exit 7", res)
	}
	if out.String() != "out\n" || errb.String() != "err\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
	if want := []string{"sh", "-c", "echo out; echo err >&2; exit 7"}; strings.Join(gotArgv, "|") != strings.Join(want, "|") {
		t.Errorf("argv %q, want %q", gotArgv, want)
	}
	if n := a.called("guest-file-close"); n != 2 {
		t.Errorf("%d handles closed, want 2", n)
	}
}

// signalWriter closes seen once the bytes it collected contain want.
type signalWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

// TestExecStreamsBeforeExit: the command writes, then waits until the
// caller has seen that output before it goes on; Exec that delivered only
// at the end would never return. Several writes past EOF also exercise the
// seek that clears the agent's sticky EOF.
func TestExecStreamsBeforeExit(t *testing.T) {
	a := newFake(t)
	w := &signalWriter{want: "first\n", seen: make(chan struct{})}
	a.run = func(p *fakeProc, _ []string, _ []byte) {
		p.write(1, "first\n")
		select {
		case <-w.seen:
		case <-time.After(10 * time.Second):
			p.write(2, "output was not streamed\n")
		}
		p.write(1, "second\n")
		p.exit(0)
	}
	c := a.client(Options{})
	var errb bytes.Buffer
	res, err := c.Exec(ctxT(t, 20*time.Second), Command{Path: "x", Stdout: w, Stderr: &errb})
	if err != nil {
		t.Fatal(err)
	}
	if got := w.buf.String(); got != "first\nsecond\n" || errb.Len() != 0 || res.ExitCode != 0 {
		t.Errorf("stdout %q stderr %q exit %d", got, errb.String(), res.ExitCode)
	}
	if a.called("guest-file-seek") == 0 {
		t.Error("never sought past the sticky EOF")
	}
}

func TestExecLargeOutputInChunks(t *testing.T) {
	a := newFake(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), (3*ReadChunk+100)/16)
	a.run = func(p *fakeProc, _ []string, _ []byte) {
		p.write(1, string(big))
		p.exit(0)
	}
	var out bytes.Buffer
	if _, err := a.client(Options{}).Exec(ctxT(t, 20*time.Second), Command{Path: "x", Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), big) {
		t.Errorf("got %d bytes, want %d", out.Len(), len(big))
	}
}

func TestExecStdin(t *testing.T) {
	for _, capture := range []bool{false, true} {
		a := newFake(t)
		a.run = func(p *fakeProc, _ []string, stdin []byte) {
			p.write(1, string(stdin))
			p.exit(0)
		}
		var out bytes.Buffer
		_, err := a.client(Options{}).Exec(ctxT(t, 10*time.Second), Command{Path: "tr", Stdin: []byte("hello\x00\xff"), Stdout: &out, Capture: capture})
		if err != nil || out.String() != "hello\x00\xff" {
			t.Errorf("capture=%v: %v, stdout %q", capture, err, out.String())
		}
	}
	_, err := newFake(t).client(Options{}).Exec(context.Background(), Command{Path: "x", Stdin: make([]byte, MaxStdin+1)})
	if err == nil || !strings.Contains(err.Error(), "standard input") {
		t.Errorf("oversized stdin: %v", err)
	}
}

func TestExecCapturedAndSignal(t *testing.T) {
	a := newFake(t)
	a.run = func(p *fakeProc, argv []string, _ []byte) {
		p.write(1, strings.Join(argv, " "))
		p.write(2, "e")
		a.mu.Lock()
		sig := 9
		p.exited, p.signal = true, &sig
		a.mu.Unlock()
	}
	var out, errb bytes.Buffer
	res, err := a.client(Options{}).Exec(ctxT(t, 10*time.Second), Command{Path: "/bin/x", Args: []string{"a"}, Stdout: &out, Stderr: &errb, Capture: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 137 || res.Signal != 9 || out.String() != "/bin/x a" || errb.String() != "e" {
		t.Errorf("result %+v stdout %q stderr %q", res, out.String(), errb.String())
	}
	if a.called("guest-file-open") != 0 {
		t.Error("Capture opened files")
	}
}

// TestExecCancelKills: a caller giving up sends the command SIGTERM.
func TestExecCancelKills(t *testing.T) {
	a := newFake(t)
	var mu sync.Mutex
	var killed []string
	a.run = func(p *fakeProc, argv []string, _ []byte) {
		if len(argv) > 2 && argv[0] == "/bin/sh" && strings.Contains(argv[2], "kill") {
			mu.Lock()
			killed = argv
			mu.Unlock()
			p.exit(0)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := a.client(Options{}).Exec(ctx, Command{Path: "sleep", Args: []string{"1000"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the deadline", err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		done := killed != nil
		mu.Unlock()
		if done {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(killed) != 5 || killed[4] != "1003" { // pids: handles 1001, 1002, then the command
		t.Errorf("kill argv %q", killed)
	}
}

// silentConn accepts writes and never answers, like QEMU's chardev when
// nothing in the guest opened the port.
func silentDial(ctx context.Context) (net.Conn, error) {
	host, guest := net.Pipe()
	go io.Copy(io.Discard, guest)
	return host, nil
}

func TestNoAgentFailsQuickly(t *testing.T) {
	dials := 0
	c := New("qga.sock", Options{SyncTimeout: 200 * time.Millisecond, Dial: func(ctx context.Context) (net.Conn, error) {
		dials++
		return silentDial(ctx)
	}})
	start := time.Now()
	_, err := c.Exec(context.Background(), Command{Path: "true"})
	if !errors.Is(err, ErrNoAgent) || !strings.Contains(err.Error(), "qemu-guest-agent") {
		t.Errorf("err %v, want ErrNoAgent with advice", err)
	}
	if d := time.Since(start); d > 5*time.Second || dials != 1 {
		t.Errorf("took %s and %d connections with a 200ms sync timeout; want one", d, dials)
	}
}

func TestNoChannel(t *testing.T) {
	c := New(t.TempDir()+"/none.sock", Options{})
	err := c.Ping(context.Background())
	if !errors.Is(err, ErrNoChannel) || !strings.Contains(err.Error(), "none.sock") {
		t.Errorf("err %v, want ErrNoChannel naming the socket", err)
	}
}

// TestFloodIsBounded: a guest that answers with an endless line costs a
// bounded buffer and an error, and the next call starts on a fresh
// connection.
func TestFloodIsBounded(t *testing.T) {
	a := newFake(t)
	flood := bytes.Repeat([]byte("x"), 16<<20)
	a.raw = func(cmd string) []byte {
		if cmd == "guest-get-host-name" {
			return flood
		}
		return nil
	}
	c := a.client(Options{MaxReply: 64 << 10})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := c.HostName(ctxT(t, 10*time.Second))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrReply) {
		t.Fatalf("err %v, want ErrReply", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("reading a 16 MiB flood allocated %d bytes; the cap is 64 KiB", alloc)
	}
	a.set(func() { a.raw = nil })
	if h, err := c.HostName(ctxT(t, 10*time.Second)); err != nil || h != "fakevm" {
		t.Errorf("after the flood: %q, %v", h, err)
	}
	if a.dials != 2 {
		t.Errorf("%d connections, want a new one after the flood", a.dials)
	}
}

func TestHostileFileRead(t *testing.T) {
	for name, reply := range map[string]string{
		"base64 over the chunk": `{"return":{"count":5,"buf-b64":"` + strings.Repeat("A", 400<<10) + `","eof":false}}` + "\n",
		"count lies":            `{"return":{"count":99,"buf-b64":"aGk=","eof":true}}` + "\n",
		"not base64":            `{"return":{"count":2,"buf-b64":"!!","eof":true}}` + "\n",
		"not an object":         `{"return":[1,2]}` + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			a := newFake(t)
			a.run = func(p *fakeProc, _ []string, _ []byte) { p.exit(0) }
			a.raw = func(cmd string) []byte {
				if cmd == "guest-file-read" {
					return []byte(reply)
				}
				return nil
			}
			_, err := a.client(Options{}).Exec(ctxT(t, 10*time.Second), Command{Path: "x"})
			if !errors.Is(err, ErrReply) {
				t.Errorf("err %v, want ErrReply", err)
			}
		})
	}
}

// TestResyncSkipsStaleReplies: whatever precedes the sync marker (late
// replies to an abandoned call, garbage, a stale marker with another
// token) is not taken for an answer.
func TestResyncSkipsStaleReplies(t *testing.T) {
	a := newFake(t)
	a.raw = func(cmd string) []byte {
		if cmd == "guest-sync-delimited" {
			a.raw = nil // the next sync (the real one) answers normally; serve holds a.mu
			return []byte("{\"return\":{\"host-name\":\"stale\"}}\n\xff{\"return\": 1}\ngarbage\xff\xff")
		}
		return nil
	}
	c := a.client(Options{SyncTimeout: 2 * time.Second})
	// The junk goes out first, then the real sync reply: Ping's connect
	// sends the sync, the fake answers with junk and no token, so the
	// client times out; the next connection syncs cleanly.
	if err := c.Ping(context.Background()); !errors.Is(err, ErrNoAgent) {
		t.Fatalf("junk-only sync: %v, want ErrNoAgent", err)
	}
	if h, err := c.HostName(context.Background()); err != nil || h != "fakevm" {
		t.Errorf("HostName = %q, %v", h, err)
	}
}

func TestRepliesWithOtherIDsAreSkipped(t *testing.T) {
	a := newFake(t)
	a.raw = func(cmd string) []byte {
		if cmd == "guest-get-host-name" {
			a.raw = nil // serve holds a.mu
			return []byte("{\"return\":{\"host-name\":\"old\"},\"id\":12345}\n{\"return\":{\"host-name\":\"new\"}}\n")
		}
		return nil
	}
	if h, err := a.client(Options{}).HostName(ctxT(t, 5*time.Second)); err != nil || h != "new" {
		t.Errorf("HostName = %q, %v", h, err)
	}
}

func TestAgentErrorKeepsConnection(t *testing.T) {
	a := newFake(t)
	c := a.client(Options{})
	_, err := c.OSInfo(context.Background())
	var ae *AgentError
	if !errors.As(err, &ae) || ae.Class != "CommandNotFound" {
		t.Fatalf("err %v, want the agent's error", err)
	}
	if err := c.Ping(context.Background()); err != nil || a.dials != 1 {
		t.Errorf("ping after an agent error: %v, %d dials", err, a.dials)
	}
}

func TestShutdown(t *testing.T) {
	a := newFake(t)
	a.handlers["guest-shutdown"] = func(json.RawMessage) (any, *AgentError) { return nil, nil } // no reply, as qemu-ga
	c := a.client(Options{})
	if err := c.Shutdown(context.Background(), PowerDown); err != nil {
		t.Errorf("shutdown without reply: %v", err)
	}
	a.set(func() {
		a.handlers["guest-shutdown"] = func(json.RawMessage) (any, *AgentError) { return nil, &AgentError{"GenericError", "no permission"} }
	})
	if err := c.Shutdown(context.Background(), Reboot); err == nil || !strings.Contains(err.Error(), "no permission") {
		t.Errorf("shutdown refused: %v", err)
	}
	if err := c.Shutdown(context.Background(), "explode"); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestInfoIsCleaned(t *testing.T) {
	a := newFake(t)
	a.handlers["guest-get-host-name"] = func(json.RawMessage) (any, *AgentError) {
		return map[string]string{"host-name": "vm\x1b]0;pwned\x07" + strings.Repeat("a", 1000)}, nil
	}
	a.handlers["guest-network-get-interfaces"] = func(json.RawMessage) (any, *AgentError) {
		return []map[string]any{{"name": "eth0", "hardware-address": "52:54:00:00:00:01",
			"ip-addresses": []map[string]any{{"ip-address-type": "ipv4", "ip-address": "10.0.2.15", "prefix": 24}}}}, nil
	}
	a.handlers["guest-get-osinfo"] = func(json.RawMessage) (any, *AgentError) {
		return map[string]string{"id": "debian", "pretty-name": "Debian GNU/Linux 12 (bookworm)\r\n", "version-id": "12"}, nil
	}
	c := a.client(Options{})
	h, err := c.HostName(context.Background())
	if err != nil || strings.ContainsAny(h, "\x1b\x07") || len(h) > maxField || !strings.HasPrefix(h, "vm]0;pwned") {
		t.Errorf("host name %q, %v", h, err)
	}
	ifs, err := c.Interfaces(context.Background())
	if err != nil || len(ifs) != 1 || ifs[0].Addresses[0].String() != "10.0.2.15/24" {
		t.Errorf("interfaces %+v, %v", ifs, err)
	}
	os, err := c.OSInfo(context.Background())
	if err != nil || os.PrettyName != "Debian GNU/Linux 12 (bookworm)" || os.VersionID != "12" {
		t.Errorf("osinfo %+v, %v", os, err)
	}
}

func TestRestrict(t *testing.T) {
	dir := t.TempDir()
	sock := dir + "/qga.sock"
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := Restrict(sock); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(sock); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if err := Restrict(dir); err == nil {
		t.Error("a directory was accepted as the socket")
	}
}
