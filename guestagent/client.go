// Package guestagent talks to the QEMU guest agent (qemu-ga) inside a VM
// through the unix socket QEMU exposes for its virtio-serial port
// org.qemu.guest_agent.0.
//
// The agent runs in the guest, so everything it sends is treated as hostile:
// every call has a deadline, a reply line is capped (MaxReply) and so is
// everything decoded from it. A guest without an agent, or one that floods
// the channel, costs a caller one timeout and a bounded buffer, never a hang
// or vmrunner's memory.
//
// One Client serves one QEMU run: QEMU's chardev takes one connection at a
// time, so the Client owns it and serialises calls. After any fault (a
// timeout, a reply too long, garbage) it drops the connection; the next call
// reconnects and resynchronises with guest-sync-delimited first.
package guestagent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// Errors a caller maps to its own answers (vmrunner exec exits 127 on both).
var (
	// ErrNoChannel: the agent's socket cannot be connected (no QEMU runs,
	// or this QEMU has no agent channel).
	ErrNoChannel = errors.New("guest agent channel not connected")
	// ErrNoAgent: the channel is there but nothing in the guest answers
	// (no qemu-guest-agent, or the guest is still booting).
	ErrNoAgent = errors.New("guest agent did not answer")
	// ErrReply: the agent's reply broke the protocol or a limit.
	ErrReply = errors.New("bad reply from the guest agent")
)

// AgentError is an error the agent itself returned for a command.
type AgentError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *AgentError) Error() string {
	return fmt.Sprintf("guest agent: %s (%s)", e.Desc, e.Class)
}

// Defaults of Options.
const (
	DefaultCallTimeout = 10 * time.Second
	DefaultSyncTimeout = 3 * time.Second
	// DefaultMaxReply fits a guest-file-read of ReadChunk bytes with room to
	// spare, and the largest answer of the info commands on any sane guest.
	DefaultMaxReply = 1 << 20
)

// Options tune a Client; zero fields take the defaults.
type Options struct {
	CallTimeout time.Duration // one command's round trip
	SyncTimeout time.Duration // the resync that opens each connection
	MaxReply    int           // bytes of one reply line
	// Dial connects to the agent; default: the unix socket at the
	// Client's path.
	Dial func(ctx context.Context) (net.Conn, error)
}

// Client is a connection to one VM's guest agent.
type Client struct {
	path string
	opts Options

	mu   sync.Mutex // one call on the channel at a time
	conn net.Conn
	r    *bufio.Reader
	id   uint64 // last request id

	spool []string // where Exec's output files go; nil: the guest's /run or /tmp
}

// New returns a Client for the agent socket at path; it connects on the
// first call.
func New(path string, opts Options) *Client {
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = DefaultSyncTimeout
	}
	if opts.MaxReply <= 0 {
		opts.MaxReply = DefaultMaxReply
	}
	if opts.Dial == nil {
		opts.Dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	}
	return &Client{path: path, opts: opts}
}

// Close drops the connection; a later call connects again.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.drop()
}

func (c *Client) drop() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn, c.r = nil, nil
	return err
}

// call runs one command and decodes its return value into result (nil:
// ignore it). maxReply caps the reply line; 0 takes Options.MaxReply.
func (c *Client) call(ctx context.Context, cmd string, args, result any, maxReply int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if maxReply <= 0 {
		maxReply = c.opts.MaxReply
	}
	if err := c.connect(ctx); err != nil {
		return err
	}
	c.id++
	raw, err := c.roundTrip(ctx, request{Execute: cmd, Arguments: args, ID: c.id}, maxReply, c.opts.CallTimeout)
	var agentErr *AgentError
	if errors.As(err, &agentErr) {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if err != nil {
		c.drop() // the stream's state is unknown: resync on the next call
		if errors.Is(err, errTimeout) {
			return fmt.Errorf("%s: %w within %s", cmd, ErrNoAgent, c.opts.CallTimeout)
		}
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(raw, result); err != nil {
		return fmt.Errorf("%s: %w: return value: %v", cmd, ErrReply, err)
	}
	return nil
}

// send writes a command that has no reply on success (guest-shutdown) and
// waits up to wait for an error reply. Either way the connection is dropped
// afterwards: a late reply must not be taken for the next command's.
func (c *Client) send(ctx context.Context, cmd string, args any, wait time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.connect(ctx); err != nil {
		return err
	}
	defer c.drop()
	c.id++
	_, err := c.roundTrip(ctx, request{Execute: cmd, Arguments: args, ID: c.id}, c.opts.MaxReply, wait)
	if err == nil || errors.Is(err, errTimeout) {
		return nil // no news is the good news of a command without a reply
	}
	return fmt.Errorf("%s: %w", cmd, err)
}

type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

var errTimeout = errors.New("timeout")

// connect dials and resynchronises when there is no connection.
func (c *Client) connect(ctx context.Context) error {
	if c.conn != nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, c.opts.SyncTimeout)
	defer cancel()
	conn, err := c.opts.Dial(dctx)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNoChannel, c.path, err)
	}
	c.conn, c.r = conn, bufio.NewReaderSize(conn, 64<<10)
	if err := c.sync(ctx); err != nil {
		c.drop()
		if errors.Is(err, errTimeout) {
			return fmt.Errorf("%w within %s (is qemu-guest-agent installed and running in the guest?)", ErrNoAgent, c.opts.SyncTimeout)
		}
		return err
	}
	return nil
}

// sync makes the stream clean: 0xFF resets the agent's JSON parser, and
// guest-sync-delimited with a random id is answered with 0xFF before its
// reply, so everything up to that marker (a previous connection's late
// replies, garbage) is skipped, and only a reply carrying our id ends it.
func (c *Client) sync(ctx context.Context) error {
	var b [8]byte
	rand.Read(b[:])
	token := int64(binary.LittleEndian.Uint64(b[:]) >> 12) // JSON-safe integer
	req, _ := json.Marshal(request{Execute: "guest-sync-delimited", Arguments: map[string]int64{"id": token}})
	stop, err := c.deadline(ctx, c.opts.SyncTimeout)
	if err != nil {
		return err
	}
	defer stop()
	if _, err := c.conn.Write(append(append([]byte{0xFF}, req...), '\n')); err != nil {
		return c.ioErr(ctx, err)
	}
	// Skipped bytes are bounded so a flooding guest cannot keep us here
	// past the deadline's worth of reading.
	skipped := 0
	for {
		for {
			bt, err := c.r.ReadByte()
			if err != nil {
				return c.ioErr(ctx, err)
			}
			if bt == 0xFF {
				break
			}
			if skipped++; skipped > 4*c.opts.MaxReply {
				return fmt.Errorf("%w: %d bytes before the sync marker", ErrReply, skipped)
			}
		}
		line, err := readLine(c.r, c.opts.MaxReply)
		if err != nil {
			if errors.Is(err, ErrReply) {
				continue // a marker inside garbage; look for the next
			}
			return c.ioErr(ctx, err)
		}
		var r struct {
			Return *int64 `json:"return"`
		}
		if json.Unmarshal(bytes.TrimPrefix(line, []byte{0xFF}), &r) == nil && r.Return != nil && *r.Return == token {
			return nil
		}
	}
}

// roundTrip writes req and returns the return value of the reply that
// carries req's id (or no id: agents are not required to echo it). Replies
// with another id are an earlier command's and skipped, a few at most.
func (c *Client) roundTrip(ctx context.Context, req request, maxReply int, timeout time.Duration) (json.RawMessage, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	stop, err := c.deadline(ctx, timeout)
	if err != nil {
		return nil, err
	}
	defer stop()
	if _, err := c.conn.Write(append(data, '\n')); err != nil {
		return nil, c.ioErr(ctx, err)
	}
	for skipped := 0; skipped < 8; skipped++ {
		line, err := readLine(c.r, maxReply)
		if err != nil {
			return nil, c.ioErr(ctx, err)
		}
		ret, ok, err := parseReply(line, req.ID)
		if err != nil {
			return nil, err
		}
		if ok {
			return ret, nil
		}
	}
	return nil, fmt.Errorf("%w: no reply with id %d", ErrReply, req.ID)
}

// deadline bounds the connection's I/O by timeout and by ctx.
func (c *Client) deadline(ctx context.Context, timeout time.Duration) (stop func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	conn := c.conn
	if err := conn.SetDeadline(d); err != nil {
		return nil, err
	}
	unwatch := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	return func() { unwatch() }, nil
}

// ioErr turns a deadline into errTimeout, or into ctx's error when ctx
// ended first.
func (c *Client) ioErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errTimeout
	}
	return err
}

// readLine reads one reply line (without its newline) of at most max bytes.
// A longer line is an error: the connection is dropped rather than the rest
// skipped, since a flooding guest may never end it.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > max+1 {
			return nil, fmt.Errorf("%w: reply longer than %d bytes", ErrReply, max)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return bytes.TrimRight(line, "\r\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// parseReply decodes one reply line. ok is false for a reply that belongs
// to another request (its id differs from want).
func parseReply(line []byte, want uint64) (ret json.RawMessage, ok bool, err error) {
	var r struct {
		Return json.RawMessage `json:"return"`
		Error  *AgentError     `json:"error"`
		ID     json.RawMessage `json:"id"`
	}
	// A stray sync marker may precede a line.
	line = bytes.TrimLeft(line, "\xff")
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrReply, err)
	}
	if len(r.ID) > 0 && string(r.ID) != fmt.Sprint(want) {
		return nil, false, nil
	}
	if r.Error != nil {
		return nil, true, r.Error
	}
	if r.Return == nil {
		return nil, false, fmt.Errorf("%w: neither return nor error", ErrReply)
	}
	return r.Return, true, nil
}

// Restrict narrows the agent socket QEMU made to its owner (0600): QEMU
// creates it with the process umask. Call it once QEMU has started.
func Restrict(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s is not a socket", path)
	}
	return os.Chmod(path, 0o600)
}
