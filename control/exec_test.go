package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/guestagent"
)

// GuestExec plays a guest: "echo" prints its arguments, "big" writes
// more than one frame, "fail" complains and exits 3, "cat" echoes its
// standard input, "sleep" waits for its context, "noagent" and "off" fail
// as a controller does without an agent or a QEMU.
func (f *fakeAPI) GuestExec(ctx context.Context, cmd guestagent.Command) (guestagent.Result, error) {
	f.call("exec " + cmd.Path + " " + strings.Join(cmd.Args, " "))
	switch cmd.Path {
	case "echo":
		fmt.Fprintln(cmd.Stdout, strings.Join(cmd.Args, " "))
	case "big":
		_, _ = cmd.Stdout.Write(bytes.Repeat([]byte("x"), 3*maxFrame+5))
	case "fail":
		fmt.Fprint(cmd.Stdout, "out")
		fmt.Fprint(cmd.Stderr, "no such file")
		return guestagent.Result{ExitCode: 3}, nil
	case "cat":
		_, _ = cmd.Stdout.Write(cmd.Stdin)
	case "sleep":
		<-ctx.Done()
		f.call("sleep ended")
		return guestagent.Result{}, ctx.Err()
	case "noagent":
		return guestagent.Result{}, fmt.Errorf("guest-sync: %w", guestagent.ErrNoAgent)
	case "nochannel":
		return guestagent.Result{}, guestagent.ErrNoChannel
	case "off":
		return guestagent.Result{}, fmt.Errorf("%w: the VM is off", controller.ErrState)
	}
	return guestagent.Result{}, nil
}

func TestExecStreamsOutputThenExit(t *testing.T) {
	_, path := serve(t, newFake())
	for _, tc := range []struct {
		x              Exec
		stdout, stderr string
		exit           int
	}{
		{Exec{Path: "echo", Args: []string{"hello", "guest"}}, "hello guest\n", "", 0},
		{Exec{Path: "fail"}, "out", "no such file", 3},
		{Exec{Path: "cat", Stdin: []byte("typed\x00bytes")}, "typed\x00bytes", "", 0},
		{Exec{Path: "big"}, strings.Repeat("x", 3*maxFrame+5), "", 0},
	} {
		var out, errb bytes.Buffer
		code, err := dial(t, path).Exec(tc.x, &out, &errb)
		if err != nil || code != tc.exit || out.String() != tc.stdout || errb.String() != tc.stderr {
			t.Errorf("%s: exit %d, %v, stdout %.40q, stderr %q; want exit %d, stdout %.40q, stderr %q",
				tc.x.Path, code, err, out.String(), errb.String(), tc.exit, tc.stdout, tc.stderr)
		}
	}
}

func TestExecErrorsKeepTheirKind(t *testing.T) {
	_, path := serve(t, newFake())
	for _, tc := range []struct {
		x    Exec
		want error
	}{
		{Exec{Path: "noagent"}, guestagent.ErrNoAgent},
		{Exec{Path: "nochannel"}, guestagent.ErrNoChannel},
		{Exec{Path: "off"}, controller.ErrState},
		{Exec{Path: "sleep", TimeoutMS: 50}, ErrTimeout},
		{Exec{}, controller.ErrInvalid},
	} {
		var out bytes.Buffer
		if _, err := dial(t, path).Exec(tc.x, &out, &out); !errors.Is(err, tc.want) {
			t.Errorf("%q: %v, want %v", tc.x.Path, err, tc.want)
		}
	}
}

// A client that hangs up ends the guest command rather than leaving it
// running with nobody to read its output.
func TestExecHangUpCancels(t *testing.T) {
	f := newFake()
	_, path := serve(t, f)
	cl := dial(t, path)
	go func() {
		var out bytes.Buffer
		_, _ = cl.Exec(Exec{Path: "sleep"}, &out, &out)
	}()
	waitCalls := func(n int) bool {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			f.mu.Lock()
			got := len(f.calls)
			f.mu.Unlock()
			if got >= n {
				return true
			}
		}
		return false
	}
	if !waitCalls(1) {
		t.Fatal("exec never reached the controller")
	}
	cl.Close()
	if !waitCalls(2) {
		t.Fatalf("the command still runs after the client hung up: %v", f.calls)
	}
}
