package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/controller"
)

// fakeAPI records calls and answers as a controller would.
type fakeAPI struct {
	mu    sync.Mutex
	calls []string
	power controller.PowerState
	boot  controller.BootOverride
	pr    *io.PipeReader // what attached consoles read
	pw    *io.PipeWriter
	typed chan []byte
}

func newFake() *fakeAPI {
	pr, pw := io.Pipe()
	return &fakeAPI{power: controller.Off, pr: pr, pw: pw, typed: make(chan []byte, 16)}
}

func (f *fakeAPI) call(name string) {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	f.mu.Unlock()
}

func (f *fakeAPI) Status() controller.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return controller.Status{Name: "vm", Power: f.power, Boot: f.boot}
}
func (f *fakeAPI) Subscribe() (<-chan controller.Event, func()) { return nil, func() {} }
func (f *fakeAPI) PowerOn(context.Context) error {
	f.call("on")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.power != controller.Off {
		return fmt.Errorf("%w: the VM is %s", controller.ErrState, f.power)
	}
	f.power = controller.Running
	return nil
}
func (f *fakeAPI) PowerOff(_ context.Context, graceful bool) error {
	f.call(fmt.Sprintf("off graceful=%v", graceful))
	return nil
}
func (f *fakeAPI) Reboot(context.Context) error { f.call("reboot"); return nil }
func (f *fakeAPI) Reset(context.Context) error  { f.call("reset"); return nil }
func (f *fakeAPI) NMI(context.Context) error    { f.call("nmi"); return nil }
func (f *fakeAPI) Pause(context.Context) error  { f.call("pause"); return nil }
func (f *fakeAPI) Resume(context.Context) error { f.call("resume"); return nil }
func (f *fakeAPI) SetBoot(_ context.Context, b controller.BootOverride) error {
	if b.Device == "floppy" {
		return fmt.Errorf("%w: boot device floppy", controller.ErrInvalid)
	}
	f.mu.Lock()
	f.boot = b
	f.mu.Unlock()
	return nil
}
func (f *fakeAPI) SetBootMode(_ context.Context, m config.BootMode) error {
	f.call("mode " + string(m))
	return nil
}
func (f *fakeAPI) InsertMedia(_ context.Context, s string) error { f.call("insert " + s); return nil }
func (f *fakeAPI) EjectMedia(context.Context) error              { f.call("eject"); return nil }
func (f *fakeAPI) AttachSerial(context.Context) (io.ReadWriteCloser, error) {
	return &fakeSerial{f: f}, nil
}
func (f *fakeAPI) DialDisplay(context.Context) (net.Conn, error) { return nil, controller.ErrState }
func (f *fakeAPI) SetDisplayPassword(context.Context, string) error {
	return controller.ErrState
}

type fakeSerial struct{ f *fakeAPI }

func (s *fakeSerial) Read(p []byte) (int, error) { return s.f.pr.Read(p) }
func (s *fakeSerial) Write(p []byte) (int, error) {
	s.f.typed <- append([]byte(nil), p...)
	return len(p), nil
}
func (s *fakeSerial) Close() error { return nil }

func serve(t *testing.T, api controller.API) (*Server, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "control.sock")
	s, err := Listen(path, api, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s, path
}

func dial(t *testing.T, path string) *Client {
	t.Helper()
	cl, err := Dial(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func TestSocketIsPrivate(t *testing.T) {
	_, path := serve(t, newFake())
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Mode()&os.ModeSocket == 0 {
		t.Errorf("mode %v, want a 0600 socket", st.Mode())
	}
}

func TestVerbs(t *testing.T) {
	f := newFake()
	_, path := serve(t, f)
	cl := dial(t, path)
	for _, req := range []Request{
		{Op: OpPowerOff, Graceful: true}, {Op: OpPowerOff}, {Op: OpReboot}, {Op: OpReset}, {Op: OpNMI},
		{Op: OpPause}, {Op: OpResume}, {Op: OpSetBootMode, BootMode: config.BootUEFI},
		{Op: OpInsertMedia, Source: "/iso/x.iso"}, {Op: OpEjectMedia},
	} {
		if resp, err := cl.Call(req); err != nil || !resp.OK || resp.Status == nil {
			t.Errorf("%+v: %+v, %v", req, resp, err)
		}
	}
	want := "off graceful=true,off graceful=false,reboot,reset,nmi,pause,resume,mode uefi,insert /iso/x.iso,eject"
	if got := strings.Join(f.calls, ","); got != want {
		t.Errorf("calls %s\nwant  %s", got, want)
	}
	resp, err := cl.Call(Request{Op: OpPowerOn})
	if err != nil || resp.Status.Power != controller.Running {
		t.Errorf("power on: %+v %v", resp, err)
	}
	if _, err := cl.Call(Request{Op: OpPowerOn}); !errors.Is(err, controller.ErrState) || !strings.Contains(err.Error(), "the VM is running") {
		t.Errorf("second power on: %v, want ErrState", err)
	}
	if _, err := cl.Call(Request{Op: OpSetBoot, Boot: &controller.BootOverride{Device: "floppy"}}); !errors.Is(err, controller.ErrInvalid) {
		t.Errorf("set_boot floppy: %v, want ErrInvalid", err)
	}
	if resp, err := cl.Call(Request{Op: OpSetBoot, Boot: &controller.BootOverride{Device: controller.BootCD, Once: true}}); err != nil || resp.Status.Boot.Device != controller.BootCD {
		t.Errorf("set_boot cd: %+v %v", resp, err)
	}
	if _, err := cl.Call(Request{Op: "format_disk"}); !errors.Is(err, controller.ErrInvalid) {
		t.Errorf("unknown op: %v", err)
	}
}

func TestBadRequestsEndTheConnection(t *testing.T) {
	_, path := serve(t, newFake())
	for name, line := range map[string]string{
		"not JSON": "hello\n",
		"too long": `{"op":"status","source":"` + strings.Repeat("a", maxRequest) + "\"}\n",
	} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte(line))
		b, _ := io.ReadAll(c)
		c.Close()
		if !strings.Contains(string(b), `"kind":"invalid"`) {
			t.Errorf("%s: answer %q", name, b)
		}
	}
	// The server still serves.
	if _, err := dial(t, path).Call(Request{Op: OpStatus}); err != nil {
		t.Error(err)
	}
}

func TestConsoleIsRawBothWays(t *testing.T) {
	f := newFake()
	_, path := serve(t, f)
	conn, err := dial(t, path).Console()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = f.pw.Write([]byte("guest says hi\n")) }()
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(conn, buf, len("guest says hi\n"))
	if err != nil || string(buf[:n]) != "guest says hi\n" {
		t.Errorf("read %q, %v", buf[:n], err)
	}
	if _, err := conn.Write([]byte("ls\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-f.typed:
		if string(b) != "ls\n" {
			t.Errorf("typed %q", b)
		}
	case <-time.After(2 * time.Second):
		t.Error("keystrokes did not arrive")
	}
}

// peerEnv makes this test binary a client that connects as another user.
const peerEnv = "VMRUNNER_CONTROL_PEER"

func TestMain(m *testing.M) {
	if path := os.Getenv(peerEnv); path != "" {
		os.Exit(peer(path))
	}
	os.Exit(m.Run())
}

// peer connects to path, asks for the status and prints what happened.
func peer(path string) int {
	cl, err := Dial(path, time.Second)
	if err != nil {
		fmt.Println("dial:", err)
		return 0
	}
	defer cl.Close()
	_, err = cl.Call(Request{Op: OpStatus})
	fmt.Println("call:", err, errors.Is(err, ErrDenied))
	return 0
}

// TestOtherUserRefused: another uid can neither open the socket (0600)
// nor, were the mode loosened, be served (SO_PEERCRED).
func TestOtherUserRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	f := newFake()
	_, path := serve(t, f)
	if err := os.Chmod(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// A copy of this binary that uid 65534 may run.
	binDir, err := os.MkdirTemp("", "ctlbin")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(binDir)
	os.Chmod(binDir, 0o755)
	bin := filepath.Join(binDir, "peer")
	if b, err := os.ReadFile(os.Args[0]); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatal(err)
	}
	run := func() string {
		cmd := exec.Command(bin)
		cmd.Env = []string{peerEnv + "=" + path}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("peer: %v: %s", err, out)
		}
		return string(out)
	}
	if out := run(); !strings.Contains(out, "dial:") || !strings.Contains(out, "permission denied") {
		t.Errorf("through the 0600 socket: %q, want the dial refused", out)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if out := run(); !strings.Contains(out, "call:") || !strings.Contains(out, "true") || !strings.Contains(out, "uid 65534") {
		t.Errorf("through a loosened socket: %q, want the server's refusal", out)
	}
	if len(f.calls) != 0 {
		t.Errorf("the refused peer reached the controller: %v", f.calls)
	}
}
