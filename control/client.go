package control

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"
)

// Client is one connection to a controller's socket.
type Client struct {
	c  net.Conn
	br *bufio.Reader
}

// Dial connects to the socket at path.
func Dial(path string, timeout time.Duration) (*Client, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	return &Client{c: c, br: bufio.NewReader(c)}, nil
}

// Close ends the connection.
func (cl *Client) Close() error { return cl.c.Close() }

// Call sends req and returns the server's answer; a refused request is an
// error (see Response.Err), with the answer still returned.
func (cl *Client) Call(req Request) (Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	_, werr := cl.c.Write(append(b, '\n'))
	// A refused peer's answer comes before any request, and the server
	// closes then: read it even when the write failed.
	line, err := cl.br.ReadBytes('\n')
	if err != nil {
		if werr != nil {
			return Response{}, werr
		}
		return Response{}, fmt.Errorf("reading the answer: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("bad answer: %w", err)
	}
	return resp, resp.Err()
}

// Exec runs a command in the guest, copying its output to stdout and
// stderr as it arrives, and returns its exit status.
func (cl *Client) Exec(x Exec, stdout, stderr io.Writer) (int, error) {
	b, err := json.Marshal(Request{Op: OpExec, Exec: &x})
	if err != nil {
		return 0, err
	}
	_, werr := cl.c.Write(append(b, '\n'))
	for {
		line, err := cl.br.ReadBytes('\n')
		if err != nil {
			if werr != nil {
				return 0, werr
			}
			return 0, fmt.Errorf("reading the answer: %w", err)
		}
		var resp Response
		if err := json.Unmarshal(line, &resp); err != nil {
			return 0, fmt.Errorf("bad answer: %w", err)
		}
		if err := resp.Err(); err != nil {
			return 0, err
		}
		switch {
		case resp.Exit != nil:
			return *resp.Exit, nil
		case resp.Stream == Stdout:
			_, err = stdout.Write(resp.Data)
		case resp.Stream == Stderr:
			_, err = stderr.Write(resp.Data)
		default:
			return 0, fmt.Errorf("bad answer: neither output nor exit status")
		}
		if err != nil {
			return 0, err
		}
	}
}

// Console attaches to the serial console and returns the raw stream: reads
// are the guest's output, writes its keystrokes; Close detaches.
func (cl *Client) Console() (io.ReadWriteCloser, error) {
	if _, err := cl.Call(Request{Op: OpConsole}); err != nil {
		return nil, err
	}
	return &rawConn{cl: cl}, nil
}

// rawConn reads through the client's buffer, which may hold output that
// came right behind the answer.
type rawConn struct{ cl *Client }

func (r *rawConn) Read(p []byte) (int, error)  { return r.cl.br.Read(p) }
func (r *rawConn) Write(p []byte) (int, error) { return r.cl.c.Write(p) }
func (r *rawConn) Close() error                { return r.cl.c.Close() }
