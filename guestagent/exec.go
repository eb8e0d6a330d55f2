package guestagent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"time"
)

// Command is a program to run in the guest.
type Command struct {
	Path string   // looked up in the guest's PATH when not absolute
	Args []string // without the program name
	Env  []string // KEY=VALUE; nil: the agent's environment
	// Stdin is written to the command's standard input (at most MaxStdin
	// bytes: it travels inside one JSON request); nil: none.
	Stdin          []byte
	Stdout, Stderr io.Writer // nil: discard
	// Capture runs the command with guest-exec's own output capture: no
	// shell needed in the guest (Windows), but the output arrives only when
	// the command has ended, and the agent keeps at most 16 MiB of each
	// stream. Without it, output is streamed while the command runs.
	Capture bool
}

// Result is how a command ended.
type Result struct {
	ExitCode  int  // the exit status, or 128+signal when Signal != 0
	Signal    int  // the signal that ended it; 0: it exited
	Truncated bool // Capture only: the agent dropped output past its limit
}

// Limits of Exec.
const (
	MaxStdin = 8 << 20
	// ReadChunk is how much one guest-file-read asks for: its base64 reply
	// fits DefaultMaxReply.
	ReadChunk = 256 << 10
	// maxCapturedReply fits a guest-exec-status with both streams at the
	// agent's 16 MiB cap in base64, the most a Capture command can send.
	maxCapturedReply = 48 << 20

	pollMin = 20 * time.Millisecond
	pollMax = 250 * time.Millisecond
)

// Exec runs cmd in the guest and returns how it ended. Output goes to
// cmd.Stdout and cmd.Stderr as it arrives (see Command.Capture). When ctx
// ends first, the command is sent SIGTERM (best effort) and ctx's error is
// returned.
//
// Streaming works with the agent Debian 12 ships (QEMU 7.2), whose
// guest-exec returns captured output only at the end: the command runs
// under /bin/sh with its stdout and stderr going to two files the agent
// created (0600, in /run or else /tmp) and unlinked as soon as the command
// holds them; Exec reads them while the command runs through the agent's
// own file handles (guest-file-read).
func (c *Client) Exec(ctx context.Context, cmd Command) (Result, error) {
	if cmd.Path == "" {
		return Result{}, errors.New("guest-exec: empty command")
	}
	if len(cmd.Stdin) > MaxStdin {
		return Result{}, fmt.Errorf("guest-exec: standard input of %d bytes is over the %d bytes one request carries", len(cmd.Stdin), MaxStdin)
	}
	if cmd.Stdout == nil {
		cmd.Stdout = io.Discard
	}
	if cmd.Stderr == nil {
		cmd.Stderr = io.Discard
	}
	if cmd.Capture {
		return c.execCaptured(ctx, cmd)
	}
	return c.execStreamed(ctx, cmd)
}

type execArgs struct {
	Path    string   `json:"path"`
	Arg     []string `json:"arg,omitempty"`
	Env     []string `json:"env,omitempty"`
	Input   string   `json:"input-data,omitempty"`
	Capture bool     `json:"capture-output,omitempty"`
}

type execStatus struct {
	Exited   bool   `json:"exited"`
	ExitCode *int   `json:"exitcode"`
	Signal   *int   `json:"signal"`
	OutData  string `json:"out-data"`
	ErrData  string `json:"err-data"`
	OutTrunc bool   `json:"out-truncated"`
	ErrTrunc bool   `json:"err-truncated"`
}

func (s execStatus) result() Result {
	switch {
	case s.Signal != nil:
		return Result{ExitCode: 128 + *s.Signal, Signal: *s.Signal, Truncated: s.OutTrunc || s.ErrTrunc}
	case s.ExitCode != nil:
		return Result{ExitCode: *s.ExitCode, Truncated: s.OutTrunc || s.ErrTrunc}
	}
	return Result{ExitCode: -1}
}

func (c *Client) start(ctx context.Context, a execArgs, stdin []byte) (int64, error) {
	if stdin != nil {
		a.Input = base64.StdEncoding.EncodeToString(stdin)
	}
	var pid struct {
		PID int64 `json:"pid"`
	}
	if err := c.call(ctx, "guest-exec", a, &pid, 0); err != nil {
		return 0, err
	}
	return pid.PID, nil
}

func (c *Client) status(ctx context.Context, pid int64, maxReply int) (execStatus, error) {
	var s execStatus
	err := c.call(ctx, "guest-exec-status", map[string]int64{"pid": pid}, &s, maxReply)
	return s, err
}

func (c *Client) execCaptured(ctx context.Context, cmd Command) (Result, error) {
	pid, err := c.start(ctx, execArgs{Path: cmd.Path, Arg: cmd.Args, Env: cmd.Env, Capture: true}, cmd.Stdin)
	if err != nil {
		return Result{}, err
	}
	p := poller{}
	for {
		s, err := c.status(ctx, pid, maxCapturedReply)
		if err != nil {
			return Result{}, c.abandon(ctx, pid, err)
		}
		if s.Exited {
			for _, o := range []struct {
				data string
				w    io.Writer
			}{{s.OutData, cmd.Stdout}, {s.ErrData, cmd.Stderr}} {
				b, err := base64.StdEncoding.DecodeString(o.data)
				if err != nil {
					return Result{}, fmt.Errorf("guest-exec-status: %w: output: %v", ErrReply, err)
				}
				if _, err := o.w.Write(b); err != nil {
					return Result{}, err
				}
			}
			return s.result(), nil
		}
		if err := p.wait(ctx, false); err != nil {
			return Result{}, c.abandon(ctx, pid, err)
		}
	}
}

// streamScript makes the command's stdout and stderr the two files, unlinks
// them (the agent's handles keep them readable, and nothing is left behind
// if vmrunner goes away) and execs the command with stdin untouched.
const streamScript = `exec >>"$1" 2>>"$2" || exit 126; rm -f -- "$1" "$2"; shift 2; exec "$@"`

// spoolDirs are where the output files go: root-only tmpfs first. Tests
// that run a real qemu-ga on the host point them at their own folder.
func (c *Client) spoolDirs() []string {
	if c.spool != nil {
		return c.spool
	}
	return []string{"/run", "/tmp"}
}

func (c *Client) execStreamed(ctx context.Context, cmd Command) (Result, error) {
	var id [12]byte
	rand.Read(id[:])
	base := "vmrunner-exec-" + hex.EncodeToString(id[:])
	var out, errf *guestFile
	var err error
	var agentErr *AgentError
	for _, dir := range c.spoolDirs() {
		if out, err = c.openFile(ctx, path.Join(dir, base+".out"), cmd.Stdout); err != nil {
			if !errors.As(err, &agentErr) {
				return Result{}, err // no agent: no other folder will do better
			}
			continue
		}
		if errf, err = c.openFile(ctx, path.Join(dir, base+".err"), cmd.Stderr); err != nil {
			out.close(ctx)
			continue
		}
		break
	}
	if err != nil {
		return Result{}, fmt.Errorf("guest-exec: creating the output files in %v: %w", c.spoolDirs(), err)
	}
	defer errf.close(ctx)
	defer out.close(ctx)

	args := append([]string{"-c", streamScript, "vmrunner-exec", out.path, errf.path, cmd.Path}, cmd.Args...)
	pid, err := c.start(ctx, execArgs{Path: "/bin/sh", Arg: args, Env: cmd.Env}, cmd.Stdin)
	if err != nil {
		return Result{}, err
	}
	p := poller{}
	for {
		// Status before reading: once the command has exited, everything
		// it wrote is in the files, and the reads below drain them.
		s, err := c.status(ctx, pid, 0)
		if err != nil {
			return Result{}, c.abandon(ctx, pid, err)
		}
		got := false
		for _, f := range []*guestFile{out, errf} {
			n, err := f.drain(ctx)
			if err != nil {
				return Result{}, c.abandon(ctx, pid, err)
			}
			got = got || n > 0
		}
		if s.Exited {
			return s.result(), nil
		}
		if err := p.wait(ctx, got); err != nil {
			return Result{}, c.abandon(ctx, pid, err)
		}
	}
}

// abandon ends a command whose caller gave up: SIGTERM through the agent,
// bounded by its own short deadline since ctx may be over.
func (c *Client) abandon(ctx context.Context, pid int64, err error) error {
	if ctx.Err() == nil || pid <= 0 {
		return err
	}
	kctx, cancel := context.WithTimeout(context.Background(), c.opts.CallTimeout)
	defer cancel()
	c.start(kctx, execArgs{Path: "/bin/sh", Arg: []string{"-c", `kill -TERM "$1"`, "kill", strconv.FormatInt(pid, 10)}}, nil)
	return err
}

// poller spaces status polls: quick while output flows, slower when idle.
type poller struct{ d time.Duration }

func (p *poller) wait(ctx context.Context, busy bool) error {
	if busy || p.d == 0 {
		p.d = pollMin
	} else if p.d *= 2; p.d > pollMax {
		p.d = pollMax
	}
	t := time.NewTimer(p.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// guestFile is an agent file handle read incrementally into w.
type guestFile struct {
	c      *Client
	path   string
	handle int64
	w      io.Writer
	offset int64
	atEOF  bool // the agent's stdio stream has its sticky EOF flag set
}

func (c *Client) openFile(ctx context.Context, p string, w io.Writer) (*guestFile, error) {
	var h int64
	// w+ creates the file 0600 (O_EXCL first) and lets the handle read.
	if err := c.call(ctx, "guest-file-open", map[string]string{"path": p, "mode": "w+"}, &h, 0); err != nil {
		return nil, err
	}
	return &guestFile{c: c, path: p, handle: h, w: w}, nil
}

type fileRead struct {
	Count int64  `json:"count"`
	Data  string `json:"buf-b64"`
	EOF   bool   `json:"eof"`
}

// drainChunks bounds one drain, so that a command that writes faster than
// the channel carries cannot keep Exec from polling its status.
const drainChunks = 16

// drain copies what the file holds past offset to w and returns how much.
func (f *guestFile) drain(ctx context.Context) (int64, error) {
	var total int64
	for range drainChunks {
		if f.atEOF {
			// glibc's EOF is sticky: fread returns nothing more until a
			// seek clears it, even when the file has grown.
			args := map[string]any{"handle": f.handle, "offset": f.offset, "whence": "set"}
			if err := f.c.call(ctx, "guest-file-seek", args, nil, 0); err != nil {
				return total, err
			}
			f.atEOF = false
		}
		var r fileRead
		if err := f.c.call(ctx, "guest-file-read", map[string]int64{"handle": f.handle, "count": ReadChunk}, &r, 0); err != nil {
			return total, err
		}
		b, err := decodeChunk(r, ReadChunk)
		if err != nil {
			return total, fmt.Errorf("guest-file-read: %w", err)
		}
		if _, err := f.w.Write(b); err != nil {
			return total, err
		}
		f.offset += int64(len(b))
		total += int64(len(b))
		f.atEOF = r.EOF
		if r.EOF || len(b) == 0 {
			return total, nil
		}
	}
	return total, nil
}

// decodeChunk checks a guest-file-read reply against what was asked.
func decodeChunk(r fileRead, max int) ([]byte, error) {
	if len(r.Data) > base64.StdEncoding.EncodedLen(max) {
		return nil, fmt.Errorf("%w: %d base64 bytes for a read of %d", ErrReply, len(r.Data), max)
	}
	b, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReply, err)
	}
	if int64(len(b)) != r.Count {
		return nil, fmt.Errorf("%w: count %d but %d bytes", ErrReply, r.Count, len(b))
	}
	return b, nil
}

// close releases the agent's handle; best effort, with its own deadline.
func (f *guestFile) close(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.c.opts.CallTimeout)
	defer cancel()
	f.c.call(cctx, "guest-file-close", map[string]int64{"handle": f.handle}, nil, 0)
}
