package guestagent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"
)

// FuzzParseReply: any line the guest sends is an answer, someone else's
// answer, or an error; never a panic, and a return value is valid JSON.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		`{"return": {}}`, `{"return": 5, "id": 1}`, `{"return": 5, "id": 2}`,
		`{"error": {"class": "GenericError", "desc": "x"}}`, "\xff{\"return\": 1}",
		`{"return": null}`, `{}`, `[]`, `{"id": "1", "return": []}`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		ret, ok, err := parseReply(line, 1)
		if ok && err == nil && !json.Valid(ret) {
			t.Errorf("accepted invalid JSON %q", ret)
		}
		var ae *AgentError
		if err != nil && !errors.As(err, &ae) && !errors.Is(err, ErrReply) {
			t.Errorf("error %v is neither the agent's nor ErrReply", err)
		}
	})
}

// FuzzReadReply feeds arbitrary bytes as the agent's answer to a file read
// through the whole client path (line cap, parse, base64 checks).
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"{\"return\":{\"count\":2,\"buf-b64\":\"aGk=\",\"eof\":true}}\n",
		"{\"return\":{\"count\":2,\"buf-b64\":\"aGk=\",\"eof\":true},\"id\":1}\n",
		"{\"return\":{\"count\":3,\"buf-b64\":\"aGk=\"}}\n",
		"{\"error\":{\"class\":\"x\",\"desc\":\"y\"}}\n",
		"\xff\xff\n\n{\n", "{\"return\":{\"buf-b64\":\"" + string(bytes.Repeat([]byte("QUFB"), 300)) + "\"}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, reply []byte) {
		c := New("fuzz", Options{MaxReply: 1024, CallTimeout: time.Second, SyncTimeout: time.Second,
			Dial: func(ctx context.Context) (net.Conn, error) {
				host, guest := net.Pipe()
				go func() {
					defer guest.Close()
					r := bufio.NewReader(guest)
					sync, _ := r.ReadBytes('\n')
					var req struct{ Arguments struct{ ID int64 } }
					json.Unmarshal(bytes.TrimLeft(sync, "\xff"), &req)
					b, _ := json.Marshal(map[string]int64{"return": req.Arguments.ID})
					guest.Write(append(append([]byte{0xFF}, b...), '\n'))
					r.ReadBytes('\n')
					guest.Write(reply)
				}()
				return host, nil
			}})
		defer c.Close()
		var b bytes.Buffer
		f := &guestFile{c: c, handle: 1, w: &b}
		n, err := f.drain(context.Background())
		if err == nil && n > ReadChunk*drainChunks {
			t.Errorf("read %d bytes", n)
		}
		if int64(b.Len()) != n {
			t.Errorf("wrote %d, reported %d", b.Len(), n)
		}
	})
}
