package guestagent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"sync"
	"testing"
)

// fakeAgent speaks qemu-ga's protocol on the far end of a pipe. Its file
// handles keep glibc's sticky EOF, and its processes are Go functions that
// write to the files Exec's shell script would have redirected to.
type fakeAgent struct {
	t *testing.T

	mu       sync.Mutex
	handlers map[string]func(args json.RawMessage) (any, *AgentError)
	files    map[string]*bytes.Buffer
	handles  map[int64]*fakeHandle
	procs    map[int64]*fakeProc
	next     int64
	echoID   bool
	calls    []string
	dials    int
	// run is the program guest-exec starts; stdout and stderr append to
	// the output files (or the captured streams).
	run func(p *fakeProc, argv []string, stdin []byte)
	// raw, when set, replaces the reply to a command with these bytes.
	raw func(cmd string) []byte
}

type fakeHandle struct {
	buf *bytes.Buffer
	pos int
	eof bool
}

type fakeProc struct {
	a              *fakeAgent
	mu             sync.Mutex
	out, err       *bytes.Buffer
	exited         bool
	code, signal   *int
	capOut, capErr bytes.Buffer
}

func (p *fakeProc) write(stream int, s string) {
	p.a.mu.Lock()
	defer p.a.mu.Unlock()
	if stream == 1 {
		p.out.WriteString(s)
	} else {
		p.err.WriteString(s)
	}
}

func (p *fakeProc) exit(code int) {
	p.a.mu.Lock()
	defer p.a.mu.Unlock()
	p.exited, p.code = true, &code
}

func newFake(t *testing.T) *fakeAgent {
	a := &fakeAgent{t: t, echoID: true, files: map[string]*bytes.Buffer{},
		handles: map[int64]*fakeHandle{}, procs: map[int64]*fakeProc{}, next: 1000}
	a.handlers = map[string]func(json.RawMessage) (any, *AgentError){
		"guest-ping":          func(json.RawMessage) (any, *AgentError) { return map[string]any{}, nil },
		"guest-get-host-name": func(json.RawMessage) (any, *AgentError) { return map[string]string{"host-name": "fakevm"}, nil },
		"guest-file-open":     a.fileOpen,
		"guest-file-read":     a.fileRead,
		"guest-file-seek":     a.fileSeek,
		"guest-file-close":    a.fileClose,
		"guest-exec":          a.exec,
		"guest-exec-status":   a.execStatus,
	}
	return a
}

// client returns a Client whose every dial opens a new pipe to a.
func (a *fakeAgent) client(opts Options) *Client {
	opts.Dial = func(ctx context.Context) (net.Conn, error) {
		host, guest := net.Pipe()
		a.mu.Lock()
		a.dials++
		a.mu.Unlock()
		go a.serve(guest)
		return host, nil
	}
	c := New("fake.sock", opts)
	a.t.Cleanup(func() { c.Close() })
	return c
}

func (a *fakeAgent) serve(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		line = bytes.TrimLeft(line, "\xff")
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(line, &req); err != nil {
			conn.Write([]byte(`{"error":{"class":"GenericError","desc":"bad JSON"}}` + "\n"))
			continue
		}
		a.mu.Lock()
		a.calls = append(a.calls, req.Execute)
		h := a.handlers[req.Execute]
		var b []byte
		if a.raw != nil {
			b = a.raw(req.Execute) // under a.mu: it may reset a.raw
		}
		a.mu.Unlock()
		if b != nil {
			if _, err := conn.Write(b); err != nil {
				return
			}
			continue
		}
		reply := map[string]any{}
		if req.Execute == "guest-sync-delimited" {
			var s struct{ ID int64 }
			json.Unmarshal(req.Arguments, &s)
			reply["return"] = s.ID
			conn.Write([]byte{0xFF})
		} else if h == nil {
			reply["error"] = AgentError{Class: "CommandNotFound", Desc: "no " + req.Execute}
		} else if ret, aerr := h(req.Arguments); aerr != nil {
			reply["error"] = aerr
		} else if ret != nil {
			reply["return"] = ret
		} else {
			continue // no reply (guest-shutdown)
		}
		if a.echoID && req.ID != nil {
			reply["id"] = req.ID
		}
		b, _ = json.Marshal(reply)
		if _, err := conn.Write(append(b, '\n')); err != nil {
			return
		}
	}
}

func (a *fakeAgent) fileOpen(raw json.RawMessage) (any, *AgentError) {
	var args struct{ Path, Mode string }
	json.Unmarshal(raw, &args)
	a.mu.Lock()
	defer a.mu.Unlock()
	if args.Mode != "w+" {
		return nil, &AgentError{"GenericError", "unexpected mode " + args.Mode}
	}
	buf := &bytes.Buffer{}
	a.files[args.Path] = buf
	a.next++
	a.handles[a.next] = &fakeHandle{buf: buf}
	return a.next, nil
}

func (a *fakeAgent) fileRead(raw json.RawMessage) (any, *AgentError) {
	var args struct{ Handle, Count int64 }
	json.Unmarshal(raw, &args)
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.handles[args.Handle]
	if h == nil {
		return nil, &AgentError{"GenericError", "no handle"}
	}
	var b []byte
	if !h.eof { // glibc: once at EOF, fread reads nothing until a seek
		b = h.buf.Bytes()[h.pos:]
		if int64(len(b)) > args.Count {
			b = b[:args.Count]
		}
		h.pos += len(b)
		h.eof = int64(len(b)) < args.Count
	}
	return map[string]any{"count": len(b), "buf-b64": base64.StdEncoding.EncodeToString(b), "eof": h.eof}, nil
}

func (a *fakeAgent) fileSeek(raw json.RawMessage) (any, *AgentError) {
	var args struct {
		Handle, Offset int64
		Whence         string
	}
	json.Unmarshal(raw, &args)
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.handles[args.Handle]
	if h == nil || args.Whence != "set" {
		return nil, &AgentError{"GenericError", "bad seek"}
	}
	h.pos, h.eof = int(args.Offset), false
	return map[string]any{"position": h.pos, "eof": false}, nil
}

func (a *fakeAgent) fileClose(raw json.RawMessage) (any, *AgentError) {
	var args struct{ Handle int64 }
	json.Unmarshal(raw, &args)
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.handles, args.Handle)
	return map[string]any{}, nil
}

func (a *fakeAgent) exec(raw json.RawMessage) (any, *AgentError) {
	var args execArgs
	if err := json.Unmarshal(raw, &args); err != nil {
		return nil, &AgentError{"GenericError", err.Error()}
	}
	stdin, _ := base64.StdEncoding.DecodeString(args.Input)
	a.mu.Lock()
	p := &fakeProc{a: a}
	argv := append([]string{args.Path}, args.Arg...)
	switch {
	case args.Capture:
		p.out, p.err = &p.capOut, &p.capErr
	case len(args.Arg) >= 5 && args.Arg[1] == streamScript:
		// /bin/sh -c streamScript NAME OUT ERR CMD ARGS…
		p.out, p.err = a.files[args.Arg[3]], a.files[args.Arg[4]]
		argv = args.Arg[5:]
	default: // output lost, as qemu-ga does without capture
		p.out, p.err = &bytes.Buffer{}, &bytes.Buffer{}
	}
	a.next++
	pid := a.next
	a.procs[pid] = p
	run := a.run
	a.mu.Unlock()
	go run(p, argv, stdin)
	return map[string]int64{"pid": pid}, nil
}

func (a *fakeAgent) execStatus(raw json.RawMessage) (any, *AgentError) {
	var args struct{ PID int64 }
	json.Unmarshal(raw, &args)
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.procs[args.PID]
	if p == nil {
		return nil, &AgentError{"GenericError", "no such pid"}
	}
	s := map[string]any{"exited": p.exited}
	if p.exited {
		if p.code != nil {
			s["exitcode"] = *p.code
		}
		if p.signal != nil {
			s["signal"] = *p.signal
		}
		if p.out == &p.capOut {
			s["out-data"] = base64.StdEncoding.EncodeToString(p.capOut.Bytes())
			s["err-data"] = base64.StdEncoding.EncodeToString(p.capErr.Bytes())
		}
	}
	return s, nil
}

// set changes the fake while connections are served.
func (a *fakeAgent) set(f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f()
}

func (a *fakeAgent) called(cmd string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		if c == cmd {
			n++
		}
	}
	return n
}
