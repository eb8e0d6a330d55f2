package controller

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// The stand-in QEMU is this test binary run again with QEMU's arguments. It
// speaks enough QMP for the controller: the greeting, capabilities, and the
// commands the controller sends, with events as QEMU sends them. Its
// behaviour comes from "-fake WORD" arguments (EXTRA_ARGS):
//
//	ignore-powerdown  the guest does not answer the ACPI button
//	ignore-quit       quit is acknowledged but QEMU keeps running
//	crash             exit 1 at once after the greeting
//	hang              accept QMP connections but never greet
//	slow-greet        greet only after 500 ms (a QEMU under load)
//	poweroff-soon     the guest powers off by itself after 100 ms
//
// It appends each command it gets to qmp.log in the working directory's
// state folder (next to the QMP socket), and echoes its stdin (the serial
// console's input) to stdout.
func fakeQEMU(args []string) int {
	var sockets []string
	modes := map[string]bool{}
	for i := 0; i < len(args)-1; i++ {
		switch args[i] {
		case "-qmp":
			p := strings.TrimPrefix(args[i+1], "unix:")
			p, _, _ = strings.Cut(p, ",server")
			sockets = append(sockets, strings.ReplaceAll(p, ",,", ","))
		case "-fake":
			modes[args[i+1]] = true
		}
	}
	if len(sockets) == 0 {
		fmt.Fprintln(os.Stderr, "fake QEMU: no -qmp")
		return 1
	}
	q := &fakeQ{modes: modes, exit: make(chan int, 1)}
	if f, err := os.OpenFile(strings.TrimSuffix(sockets[0], "qmp.sock")+"qmp.log", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
		q.cmdLog = f
	}
	for i, s := range sockets {
		l, err := net.Listen("unix", s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake QEMU:", err)
			return 1
		}
		go q.accept(l, i == 0)
	}
	go func() { _, _ = io.Copy(os.Stdout, os.Stdin) }()
	fmt.Println("fake QEMU booted")
	if modes["poweroff-soon"] {
		go func() {
			time.Sleep(100 * time.Millisecond)
			q.event("SHUTDOWN", `{"guest":true,"reason":"guest-shutdown"}`)
			q.end(0)
		}()
	}
	code := <-q.exit
	time.Sleep(20 * time.Millisecond) // let the last event leave
	return code
}

type fakeQ struct {
	modes  map[string]bool
	exit   chan int
	cmdLog *os.File

	mu   sync.Mutex
	main net.Conn // the controller's connection, which gets the events
}

func (q *fakeQ) end(code int) {
	select {
	case q.exit <- code:
	default:
	}
}

func (q *fakeQ) accept(l net.Listener, main bool) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go q.serve(c, main)
	}
}

func (q *fakeQ) write(c net.Conn, s string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, _ = c.Write([]byte(s + "\r\n"))
}

func (q *fakeQ) event(name, data string) {
	q.mu.Lock()
	c := q.main
	q.mu.Unlock()
	if c != nil {
		now := time.Now()
		q.write(c, fmt.Sprintf(`{"event":%q,"data":%s,"timestamp":{"seconds":%d,"microseconds":%d}}`, name, data, now.Unix(), now.Nanosecond()/1000))
	}
}

func (q *fakeQ) serve(c net.Conn, main bool) {
	if q.modes["hang"] {
		select {}
	}
	if q.modes["slow-greet"] {
		time.Sleep(500 * time.Millisecond)
	}
	q.write(c, `{"QMP":{"version":{"qemu":{"micro":0,"minor":2,"major":7},"package":""},"capabilities":[]}}`)
	if q.modes["crash"] {
		q.end(1)
		return
	}
	if main {
		q.mu.Lock()
		q.main = c
		q.mu.Unlock()
	}
	// Commands come without newlines (go-qemu writes bare JSON objects).
	dec := json.NewDecoder(c)
	for {
		var cmd struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if dec.Decode(&cmd) != nil {
			return
		}
		if q.cmdLog != nil {
			fmt.Fprintf(q.cmdLog, "%s %s\n", cmd.Execute, cmd.Arguments)
		}
		reply := `{"return":{}}`
		switch cmd.Execute {
		case "query-status":
			reply = `{"return":{"running":true,"singlestep":false,"status":"running"}}`
		case "system_powerdown":
			q.write(c, reply)
			q.event("POWERDOWN", `{}`)
			if !q.modes["ignore-powerdown"] {
				q.event("SHUTDOWN", `{"guest":true,"reason":"guest-shutdown"}`)
				q.end(0)
			}
			continue
		case "quit":
			q.write(c, reply)
			if !q.modes["ignore-quit"] {
				q.event("SHUTDOWN", `{"guest":false,"reason":"host-qmp-quit"}`)
				q.end(0)
			}
			continue
		case "system_reset":
			q.write(c, reply)
			q.event("RESET", `{"guest":false,"reason":"host-qmp-system-reset"}`)
			continue
		case "stop":
			q.write(c, reply)
			q.event("STOP", `{}`)
			continue
		case "cont":
			q.write(c, reply)
			q.event("RESUME", `{}`)
			continue
		}
		q.write(c, reply)
	}
}
