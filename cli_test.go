package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/control"
	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/guestagent"
	"github.com/vmrunner/vmrunner/vm"
)

func TestParseExec(t *testing.T) {
	sh := func(line string) control.Exec { return control.Exec{Path: "/bin/sh", Args: []string{"-c", line}} }
	for _, tc := range []struct {
		args  []string
		want  control.Exec
		stdin bool
		bad   bool
	}{
		{args: []string{"uname -a | tr a-z A-Z"}, want: sh("uname -a | tr a-z A-Z")},
		{args: []string{"ls", "-l", "/my dir"}, want: control.Exec{Path: "ls", Args: []string{"-l", "/my dir"}}},
		{args: []string{"--", "-weird", "x"}, want: control.Exec{Path: "-weird", Args: []string{"x"}}},
		{args: []string{"-i", "--timeout", "90s", "cat"}, want: control.Exec{Path: "/bin/sh", Args: []string{"-c", "cat"}, TimeoutMS: 90000}, stdin: true},
		{args: []string{"--timeout=2m", "ls", "--timeout=1s"}, want: control.Exec{Path: "ls", Args: []string{"--timeout=1s"}, TimeoutMS: 120000}},
		{args: nil, bad: true},
		{args: []string{"--"}, bad: true},
		{args: []string{""}, bad: true},
		{args: []string{"--timeout"}, bad: true},
		{args: []string{"--timeout", "soon", "ls"}, bad: true},
		{args: []string{"--timeout", "-1s", "ls"}, bad: true},
		{args: []string{"--user", "root", "ls"}, bad: true},
	} {
		x, stdin, err := parseExec(tc.args)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: accepted as %+v", tc.args, x)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(x, tc.want) || stdin != tc.stdin {
			t.Errorf("%q: %+v stdin=%v %v; want %+v stdin=%v", tc.args, x, stdin, err, tc.want, tc.stdin)
		}
	}
}

// guestOnly is a controller that only runs guest commands: exit with the
// command's first argument, or fail as an agentless or stopped VM does.
type guestOnly struct{ controller.API }

func (guestOnly) GuestExec(_ context.Context, cmd guestagent.Command) (guestagent.Result, error) {
	switch cmd.Path {
	case "noagent":
		return guestagent.Result{}, fmt.Errorf("guest-sync: %w", guestagent.ErrNoAgent)
	case "off":
		return guestagent.Result{}, fmt.Errorf("%w: the VM is off", controller.ErrState)
	}
	var code int
	fmt.Sscan(cmd.Args[0], &code)
	return guestagent.Result{ExitCode: code}, nil
}

func TestExecExitCodes(t *testing.T) {
	data, err := os.MkdirTemp("", "cli") // short: a socket path has 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(data)
	env := map[string]string{"DATA_DIR": data, "GUEST_NAME": "vm"}
	if code := client([]string{"exec", "true"}, env); code != execNoVM {
		t.Errorf("without a vmrunner: exit %d, want %d", code, execNoVM)
	}
	state := filepath.Join(data, "vms", "vm")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := control.Listen(vm.ControlSocket(state), guestOnly{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Close()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"exec", "exit", "0"}, 0},
		{[]string{"exec", "exit", "42"}, 42},
		{[]string{"guest-exec", "exit", "3"}, 3},
		{[]string{"exec", "noagent", "x"}, execNoAgent},
		{[]string{"guest-exec", "off", "x"}, execNoAgent},
		{[]string{"exec", "--timeout", "x", "ls"}, 2},
	} {
		if code := client(tc.args, env); code != tc.want {
			t.Errorf("%q: exit %d, want %d", tc.args, code, tc.want)
		}
	}
}

func TestPrintStatusShowsTheGuest(t *testing.T) {
	var b strings.Builder
	printStatus(&b, &controller.Status{Name: "vm", Power: controller.Running})
	if strings.Contains(b.String(), "guest") {
		t.Errorf("without an agent:\n%s", b.String())
	}
	b.Reset()
	printStatus(&b, &controller.Status{Name: "vm", Power: controller.Running, Guest: &controller.GuestInfo{
		HostName: "web1", OS: "Debian GNU/Linux 12 (bookworm)", Kernel: "6.1.0-28-amd64",
		Addresses: []string{"eth0 10.0.2.15/24"}, Updated: time.Now()}})
	for _, want := range []string{"web1, Debian GNU/Linux 12 (bookworm) (6.1.0-28-amd64)", "guest address  eth0 10.0.2.15/24"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}
