package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/guestagent"
)

// maxRequest bounds one request line: an exec's standard input in base64
// and room for the rest. Only an allowed peer gets to send one.
const maxRequest = guestagent.MaxStdin/3*4 + 64<<10

// maxFrame bounds the data of one exec output frame.
const maxFrame = 32 << 10

// Server serves one controller on a unix socket.
type Server struct {
	api  controller.API
	log  *zap.Logger
	l    *net.UnixListener
	path string
	// allowed decides whether a peer uid may connect; the default allows
	// this process's uid and root.
	allowed func(uid uint32) bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Listen makes the socket at path (a stale one from a killed run is
// replaced: the caller holds the state folder's lock) with mode 0600.
func Listen(path string, api controller.API, log *zap.Logger) (*Server, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// Connecting needs write permission, which the umask already denied
	// to others in the moment before this; the peer check backs it up.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	me := uint32(os.Getuid())
	return &Server{api: api, log: log, l: l, path: path, conns: map[net.Conn]struct{}{},
		allowed: func(uid uint32) bool { return uid == me || uid == 0 }}, nil
}

// Serve accepts clients until Close.
func (s *Server) Serve() {
	for {
		c, err := s.l.AcceptUnix()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serve(c)
		}()
	}
}

// Close stops accepting, ends every connection (attached consoles too) and
// removes the socket.
func (s *Server) Close() error {
	err := s.l.Close() // removes the socket file
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return cred.Uid, nil
}

func (s *Server) serve(c *net.UnixConn) {
	enc := json.NewEncoder(c)
	uid, err := peerUID(c)
	if err != nil || !s.allowed(uid) {
		s.log.Warn("control socket: peer refused", zap.Uint32("uid", uid), zap.Error(err))
		_ = enc.Encode(Response{Error: fmt.Sprintf("uid %d may not control this VM", uid), Kind: KindDenied})
		return
	}
	br := bufio.NewReaderSize(c, 4096)
	for {
		line, err := readLine(br)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = enc.Encode(Response{Error: err.Error(), Kind: KindInvalid})
			}
			return
		}
		var req Request
		if err := json.Unmarshal(line, &req); err != nil {
			_ = enc.Encode(Response{Error: "bad request: " + err.Error(), Kind: KindInvalid})
			return
		}
		switch req.Op {
		case OpConsole:
			s.console(c, br, enc)
			return
		case OpExec:
			s.exec(c, br, enc, req.Exec)
			return
		}
		if err := enc.Encode(s.handle(req)); err != nil {
			return
		}
	}
}

// readLine reads one line of at most maxRequest bytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > maxRequest {
			return nil, fmt.Errorf("request over %d bytes", maxRequest)
		}
		if !isPrefix {
			return line, nil
		}
	}
}

func (s *Server) handle(req Request) Response {
	ctx := context.Background()
	var err error
	switch req.Op {
	case OpStatus:
		st := s.api.Status()
		return Response{OK: true, Status: &st}
	case OpPowerOn:
		err = s.api.PowerOn(ctx)
	case OpPowerOff:
		err = s.api.PowerOff(ctx, req.Graceful)
	case OpReboot:
		err = s.api.Reboot(ctx)
	case OpReset:
		err = s.api.Reset(ctx)
	case OpNMI:
		err = s.api.NMI(ctx)
	case OpPause:
		err = s.api.Pause(ctx)
	case OpResume:
		err = s.api.Resume(ctx)
	case OpSetBoot:
		if req.Boot == nil {
			return Response{Error: "set_boot needs boot", Kind: KindInvalid}
		}
		err = s.api.SetBoot(ctx, *req.Boot)
	case OpSetBootMode:
		err = s.api.SetBootMode(ctx, req.BootMode)
	case OpInsertMedia:
		err = s.api.InsertMedia(ctx, req.Source)
	case OpEjectMedia:
		err = s.api.EjectMedia(ctx)
	case OpSetDisplayPassword:
		err = s.api.SetDisplayPassword(ctx, req.Password)
	default:
		return Response{Error: fmt.Sprintf("unknown op %q", req.Op), Kind: KindInvalid}
	}
	if err != nil {
		s.log.Info("control request refused", zap.String("op", req.Op), zap.Error(err))
		return errorResponse(err)
	}
	s.log.Info("control request", zap.String("op", req.Op))
	st := s.api.Status()
	return Response{OK: true, Status: &st}
}

func errorResponse(err error) Response {
	kind := KindOther
	switch {
	case errors.Is(err, controller.ErrState):
		kind = KindState
	case errors.Is(err, controller.ErrInvalid):
		kind = KindInvalid
	case errors.Is(err, guestagent.ErrNoAgent):
		kind = KindNoAgent
	case errors.Is(err, guestagent.ErrNoChannel):
		kind = KindNoChan
	}
	return Response{Error: err.Error(), Kind: kind}
}

// console attaches the connection to the serial console: raw bytes both
// ways until either side ends.
func (s *Server) console(c *net.UnixConn, br *bufio.Reader, enc *json.Encoder) {
	serial, err := s.api.AttachSerial(context.Background())
	if err != nil {
		_ = enc.Encode(errorResponse(err))
		return
	}
	defer serial.Close()
	if err := enc.Encode(Response{OK: true}); err != nil {
		return
	}
	s.log.Info("console attached")
	defer s.log.Info("console detached")
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(serial, br) // keystrokes, including any read ahead
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(c, serial)
		done <- struct{}{}
	}()
	<-done
}

// exec runs a guest command and streams its output as frames, then its exit
// status. The client sends nothing more: its hang-up ends the command.
func (s *Server) exec(c *net.UnixConn, br *bufio.Reader, enc *json.Encoder, x *Exec) {
	if x == nil || x.Path == "" {
		_ = enc.Encode(Response{Error: "exec needs a command", Kind: KindInvalid})
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if x.TimeoutMS > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(x.TimeoutMS)*time.Millisecond)
		defer cancel()
	}
	go func() {
		_, _ = io.Copy(io.Discard, br)
		cancel()
	}()
	fw := &frameWriter{enc: enc, cancel: cancel}
	s.log.Info("control request", zap.String("op", OpExec), zap.String("path", x.Path), zap.Int("args", len(x.Args)))
	res, err := s.api.GuestExec(ctx, guestagent.Command{Path: x.Path, Args: x.Args, Stdin: x.Stdin,
		Stdout: fw.stream(Stdout), Stderr: fw.stream(Stderr)})
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("%w after %s", ErrTimeout, time.Duration(x.TimeoutMS)*time.Millisecond)
		_ = fw.send(Response{Error: err.Error(), Kind: KindTimeout})
	case err != nil:
		s.log.Info("exec failed", zap.Error(err))
		_ = fw.send(errorResponse(err))
	default:
		_ = fw.send(Response{OK: true, Exit: &res.ExitCode})
	}
}

// frameWriter sends an exec's output as frames on the connection; a
// client that went away cancels the command.
type frameWriter struct {
	mu     sync.Mutex
	enc    *json.Encoder
	cancel func()
}

func (f *frameWriter) send(r Response) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enc.Encode(r); err != nil {
		f.cancel()
		return err
	}
	return nil
}

func (f *frameWriter) stream(name string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		for i := 0; i < len(p); i += maxFrame {
			if err := f.send(Response{OK: true, Stream: name, Data: p[i:min(i+maxFrame, len(p))]}); err != nil {
				return i, err
			}
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }
