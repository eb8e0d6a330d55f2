package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/guestagent"
	"github.com/vmrunner/vmrunner/supervisor"
	"github.com/vmrunner/vmrunner/vm"
)

func TestMain(m *testing.M) {
	// QEMU's children get a minimal environment, so the stand-in is told
	// by its arguments: no go test flag looks like QEMU's.
	if slices.Contains(os.Args, "-nodefaults") {
		os.Exit(fakeQEMU(os.Args[1:]))
	}
	forceGrace = 200 * time.Millisecond
	os.Exit(m.Run())
}

// One reaper per process: it owns wait4 for every child.
var reaper = sync.OnceValue(func() *supervisor.Reaper { return supervisor.NewReaper(nil) })

// fixture is a controller over the stand-in QEMU.
type fixture struct {
	t    *testing.T
	c    *Controller
	logs *observer.ObservedLogs
	prep *vm.Prepared
	plan *vm.Plan
	out  *syncBuffer
	code chan int
}

type options struct {
	modes          []string
	keepAlive      bool
	powerOnAtStart bool
	timeout        time.Duration // SHUTDOWN_TIMEOUT
	binary         string
	env            map[string]string // more variables
}

func newFixture(t *testing.T, o options) *fixture {
	t.Helper()
	// Short: the QMP sockets' paths must fit sun_path.
	data, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	env := map[string]string{
		"DATA_DIR": data, "GUEST_NAME": "t", "KERNEL": os.Args[0], "BOOT_MODE": "legacy",
		"NETWORK_MODE": "none", "CLOUD_INIT": "0", "ACCEL": "tcg", "PERSIST": "1",
		"QEMU_BINARY": os.Args[0], "MEMORY": "64", "CPUS": "1",
	}
	for _, m := range o.modes {
		env["EXTRA_ARGS"] += " -fake " + m
	}
	if o.binary != "" {
		env["QEMU_BINARY"] = o.binary
	}
	for k, v := range o.env {
		env[k] = v
	}
	cfg, err := config.Load(env, config.Host{MemoryMiB: 1024, CPUs: 2, Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.ShutdownTimeout = o.timeout
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 2 * time.Second
	}
	plan, err := vm.MakePlan(cfg, vm.Facts{FirmwareExists: func(string) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	prep, err := vm.Prepare(context.Background(), plan, vm.Tools{Run: reaper().OutputContext})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prep.Release() })
	core, logs := observer.New(zapcore.DebugLevel)
	f := &fixture{t: t, logs: logs, prep: prep, plan: plan, out: &syncBuffer{}, code: make(chan int, 1)}
	f.c = New(Options{
		Plan: plan, Prepared: prep, Reaper: reaper(), Log: zap.New(core), Console: f.out,
		KeepAlive: o.keepAlive, PowerOnAtStart: o.powerOnAtStart,
	})
	go func() { f.code <- f.c.Run(context.Background()) }()
	t.Cleanup(func() {
		select {
		case <-f.code:
		default:
			f.c.Shutdown()
			f.c.Shutdown()
			select {
			case <-f.code:
			case <-time.After(5 * time.Second):
				t.Error("controller did not end")
			}
		}
	})
	return f
}

// wait waits for Run's exit status.
func (f *fixture) wait() int {
	f.t.Helper()
	select {
	case code := <-f.code:
		f.code <- code
		return code
	case <-time.After(5 * time.Second):
		f.t.Fatalf("Run did not return; power %s", f.c.Status().Power)
		return -1
	}
}

// waitPower waits until the VM is in state p.
func (f *fixture) waitPower(p PowerState) {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.c.Status().Power != p {
		if time.Now().After(deadline) {
			f.t.Fatalf("power is %s, want %s; transitions %v", f.c.Status().Power, p, f.transitions())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// transitions are the logged power changes, "from>to".
func (f *fixture) transitions() []string {
	var out []string
	for _, e := range f.logs.FilterMessage("power").All() {
		m := e.ContextMap()
		out = append(out, m["from"].(string)+">"+m["to"].(string))
	}
	return out
}

func (f *fixture) wantTransitions(want ...string) {
	f.t.Helper()
	if got := f.transitions(); strings.Join(got, " ") != strings.Join(want, " ") {
		f.t.Errorf("transitions %v, want %v", got, want)
	}
}

func (f *fixture) qmpLog() string {
	b, _ := os.ReadFile(filepath.Join(f.plan.Paths.State, "qmp.log"))
	return string(b)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var ctx = context.Background()

func TestGuestPowerOffEndsRunWithoutKeepAlive(t *testing.T) {
	f := newFixture(t, options{modes: []string{"poweroff-soon"}, powerOnAtStart: true})
	if code := f.wait(); code != supervisor.ExitPoweredOff {
		t.Errorf("exit %d, want 0", code)
	}
	f.wantTransitions("off>starting", "starting>running", "running>off")
	if !strings.Contains(f.out.String(), "fake QEMU booted") {
		t.Errorf("console mirror lacks QEMU's output: %q", f.out.String())
	}
}

func TestShutdownPressesButton(t *testing.T) {
	f := newFixture(t, options{powerOnAtStart: true})
	f.waitPower(Running)
	f.c.Shutdown()
	if code := f.wait(); code != supervisor.ExitPoweredOff {
		t.Errorf("exit %d, want 0", code)
	}
	f.wantTransitions("off>starting", "starting>running", "running>stopping", "stopping>off")
	if !strings.Contains(f.qmpLog(), "system_powerdown") {
		t.Errorf("no system_powerdown sent: %q", f.qmpLog())
	}
}

func TestIgnoredButtonIsForcedAfterTimeout(t *testing.T) {
	f := newFixture(t, options{modes: []string{"ignore-powerdown"}, powerOnAtStart: true, timeout: 100 * time.Millisecond})
	f.waitPower(Running)
	f.c.Shutdown()
	if code := f.wait(); code != supervisor.ExitForced {
		t.Errorf("exit %d, want 3", code)
	}
	if !strings.Contains(f.qmpLog(), "quit") {
		t.Errorf("no quit sent: %q", f.qmpLog())
	}
	// Halfway, the guest agent was asked (this fake QEMU has none).
	if f.logs.FilterMessage("the guest ignores the ACPI button: asking its guest agent to power off").Len() != 1 {
		t.Errorf("the guest agent was not asked halfway; transitions %v", f.transitions())
	}
}

func TestIgnoredQuitIsKilled(t *testing.T) {
	f := newFixture(t, options{modes: []string{"ignore-powerdown", "ignore-quit"}, powerOnAtStart: true, timeout: 50 * time.Millisecond})
	f.waitPower(Running)
	f.c.Shutdown()
	if code := f.wait(); code != supervisor.ExitForced {
		t.Errorf("exit %d, want 3", code)
	}
	if f.logs.FilterMessage("QEMU ignored quit: SIGKILL").Len() != 1 {
		t.Error("no SIGKILL logged")
	}
}

func TestSecondShutdownForces(t *testing.T) {
	f := newFixture(t, options{modes: []string{"ignore-powerdown"}, powerOnAtStart: true, timeout: time.Hour})
	f.waitPower(Running)
	f.c.Shutdown()
	f.waitPower(Stopping)
	f.c.Shutdown()
	if code := f.wait(); code != supervisor.ExitForced {
		t.Errorf("exit %d, want 3", code)
	}
}

func TestCrashIsFault(t *testing.T) {
	f := newFixture(t, options{modes: []string{"crash"}, powerOnAtStart: true})
	if code := f.wait(); code != supervisor.ExitFault {
		t.Errorf("exit %d, want 1", code)
	}
	if f.logs.FilterMessage("QEMU ended unexpectedly").Len() != 1 {
		t.Error("the crash is not logged")
	}
	if st := f.c.Status(); !strings.Contains(st.LastExit, "exit status 1") {
		t.Errorf("LastExit %q", st.LastExit)
	}
}

func TestMissingBinaryIsFault(t *testing.T) {
	f := newFixture(t, options{binary: "/nonexistent/qemu", powerOnAtStart: true})
	if code := f.wait(); code != supervisor.ExitFault {
		t.Errorf("exit %d, want 1", code)
	}
	f.wantTransitions("off>starting", "starting>off")
	if f.c.Started() || f.c.StartError() == nil {
		t.Errorf("Started %v, StartError %v", f.c.Started(), f.c.StartError())
	}
}

func TestHungQMPIsKilled(t *testing.T) {
	defer func(d time.Duration) { qmpConnectTimeout = d }(qmpConnectTimeout)
	qmpConnectTimeout = 300 * time.Millisecond
	f := newFixture(t, options{modes: []string{"hang"}, powerOnAtStart: true})
	f.waitPower(Running)
	f.c.Shutdown()
	f.waitPower(Stopping)
	f.c.Shutdown() // without QMP, the force is SIGKILL
	if code := f.wait(); code != supervisor.ExitForced {
		t.Errorf("exit %d, want 3", code)
	}
}

// TestLateQMPStillStopsGracefully: QMP that connects after powerOn
// stopped waiting still carries the ACPI button of a stop asked meanwhile.
func TestLateQMPStillStopsGracefully(t *testing.T) {
	defer func(d time.Duration) { qmpConnectTimeout = d }(qmpConnectTimeout)
	qmpConnectTimeout = 50 * time.Millisecond
	f := newFixture(t, options{modes: []string{"slow-greet"}, powerOnAtStart: true, timeout: time.Minute})
	f.waitPower(Running)
	f.c.Shutdown()
	if code := f.wait(); code != supervisor.ExitPoweredOff {
		t.Errorf("exit %d, want 0 (the guest heard the button)", code)
	}
	if f.logs.FilterMessage("QMP connected late").Len() != 1 {
		t.Error("no late QMP connection logged")
	}
}

func TestKeepAliveStaysUpAndPowersOnAgain(t *testing.T) {
	f := newFixture(t, options{modes: []string{"poweroff-soon"}, keepAlive: true, powerOnAtStart: true})
	f.waitPower(Running)
	first := f.c.Status()
	f.waitPower(Off)
	if err := f.c.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	second := f.c.Status()
	if second.PID == first.PID || second.UUID != first.UUID || second.UUID == "" {
		t.Errorf("second run pid %d uuid %q; first pid %d uuid %q", second.PID, second.UUID, first.PID, first.UUID)
	}
	f.waitPower(Off)
	f.c.Shutdown()
	if code := f.wait(); code != supervisor.ExitPoweredOff {
		t.Errorf("exit %d, want 0", code)
	}
	f.wantTransitions("off>starting", "starting>running", "running>off", "off>starting", "starting>running", "running>off")
}

func TestNoPowerOnAtStart(t *testing.T) {
	f := newFixture(t, options{keepAlive: true})
	time.Sleep(50 * time.Millisecond)
	if st := f.c.Status(); st.Power != Off || st.PID != 0 {
		t.Fatalf("status %+v, want off", st)
	}
	for name, fn := range map[string]func(context.Context) error{
		"PowerOff": func(ctx context.Context) error { return f.c.PowerOff(ctx, true) },
		"Reset":    f.c.Reset, "NMI": f.c.NMI, "Pause": f.c.Pause, "Resume": f.c.Resume, "Reboot": f.c.Reboot,
	} {
		if err := fn(ctx); !errors.Is(err, ErrState) {
			t.Errorf("%s while off: %v, want ErrState", name, err)
		}
	}
	if err := f.c.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.c.PowerOn(ctx); !errors.Is(err, ErrState) {
		t.Errorf("PowerOn while running: %v, want ErrState", err)
	}
	if err := f.c.PowerOff(ctx, false); err != nil {
		t.Fatal(err)
	}
	f.waitPower(Off)
	if st := f.c.Status(); st.LastExit != "stopped by force" {
		t.Errorf("LastExit %q", st.LastExit)
	}
	f.c.Shutdown()
	if code := f.wait(); code != supervisor.ExitPoweredOff {
		t.Errorf("exit %d after a shutdown while off, want 0", code)
	}
}

func TestPauseResumeNMIReset(t *testing.T) {
	f := newFixture(t, options{powerOnAtStart: true})
	f.waitPower(Running)
	events, cancel := f.c.Subscribe()
	defer cancel()
	for _, step := range []struct {
		name string
		fn   func(context.Context) error
		want PowerState
	}{
		{"Pause", f.c.Pause, Paused},
		{"NMI", f.c.NMI, Paused},
		{"Resume", f.c.Resume, Running},
		{"Reset", f.c.Reset, Running},
	} {
		if err := step.fn(ctx); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if p := f.c.Status().Power; p != step.want {
			t.Errorf("after %s: %s, want %s", step.name, p, step.want)
		}
	}
	if err := f.c.Resume(ctx); !errors.Is(err, ErrState) {
		t.Errorf("Resume while running: %v", err)
	}
	log := f.qmpLog()
	for _, cmd := range []string{"stop", "inject-nmi", "cont", "system_reset"} {
		if !strings.Contains(log, cmd+" ") {
			t.Errorf("QMP log lacks %s: %q", cmd, log)
		}
	}
	got := []PowerState{(<-events).To, (<-events).To}
	if got[0] != Paused || got[1] != Running {
		t.Errorf("events %v", got)
	}
	f.c.Shutdown()
	f.wait()
}

func TestRebootStartsNewQEMU(t *testing.T) {
	f := newFixture(t, options{powerOnAtStart: true})
	f.waitPower(Running)
	pid := f.c.Status().PID
	if err := f.c.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for st := f.c.Status(); st.Power != Running || st.PID == pid; st = f.c.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("no new run: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.wantTransitions("off>starting", "starting>running", "running>stopping", "stopping>off", "off>starting", "starting>running")
	f.c.Shutdown()
	if code := f.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

func TestBootOverrideAndResetRestart(t *testing.T) {
	f := newFixture(t, options{powerOnAtStart: true})
	f.waitPower(Running)
	pid := f.c.Status().PID
	if err := f.c.SetBoot(ctx, BootOverride{Device: "floppy"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetBoot(floppy): %v", err)
	}
	if err := f.c.SetBoot(ctx, BootOverride{Device: BootCD, Once: true}); err != nil {
		t.Fatal(err)
	}
	// The pending boot differs from the running QEMU's: a reset restarts.
	if err := f.c.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for st := f.c.Status(); st.Power != Running || st.PID == pid; st = f.c.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("reset did not restart QEMU: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	starts := f.logs.FilterMessage("starting QEMU").All()
	args := ""
	for _, a := range starts[len(starts)-1].ContextMap()["args"].([]any) {
		args += a.(string) + " "
	}
	if !strings.Contains(args, "drive=cd0,id=cd0dev,bootindex=0") {
		t.Errorf("restart's args lack the CD's bootindex: %s", args)
	}
	if st := f.c.Status(); st.Boot != (BootOverride{}) {
		t.Errorf("boot %+v after a once start, want the default", st.Boot)
	}
	f.c.Shutdown()
	f.wait()
}

func TestMediaLiveAndOff(t *testing.T) {
	f := newFixture(t, options{keepAlive: true})
	iso := filepath.Join(t.TempDir(), "a.iso")
	if err := os.WriteFile(iso, []byte("iso"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"file:///etc/passwd", "relative.iso", "/nonexistent.iso", "/dev"} {
		if err := f.c.InsertMedia(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("InsertMedia(%q): %v, want ErrInvalid", bad, err)
		}
	}
	if err := f.c.InsertMedia(ctx, "https://example.invalid/x.iso"); !errors.Is(err, ErrInvalid) {
		t.Errorf("a URL without FetchMedia: %v", err)
	}
	if err := f.c.InsertMedia(ctx, iso); err != nil {
		t.Fatal(err)
	}
	if err := f.c.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	starts := f.logs.FilterMessage("starting QEMU").All()
	found := false
	for _, a := range starts[0].ContextMap()["args"].([]any) {
		found = found || strings.HasPrefix(a.(string), "file="+iso+",if=none,id=cd0")
	}
	if !found {
		t.Error("the medium inserted while off is not in QEMU's args")
	}
	if err := f.c.EjectMedia(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.c.InsertMedia(ctx, iso); err != nil {
		t.Fatal(err)
	}
	log := f.qmpLog()
	if !strings.Contains(log, `eject {"force":true,"id":"cd0dev"}`) || !strings.Contains(log, `blockdev-change-medium {"filename":"`+iso) {
		t.Errorf("QMP log: %q", log)
	}
	if st := f.c.Status(); st.Media.Source != iso {
		t.Errorf("media %+v", st.Media)
	}
}

func TestSerialConsoleViewers(t *testing.T) {
	f := newFixture(t, options{powerOnAtStart: true})
	f.waitPower(Running)
	a, _ := f.c.AttachSerial(ctx)
	b, _ := f.c.AttachSerial(ctx)
	defer b.Close()
	if _, err := a.Write([]byte("typed-by-a\n")); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]io.Reader{"a": a, "b": b} {
		if got := readUntil(t, v, "typed-by-a"); !strings.Contains(got, "typed-by-a") {
			t.Errorf("viewer %s read %q", name, got)
		}
	}
	a.Close()
	if _, err := a.Write([]byte("x")); err == nil {
		t.Error("a closed viewer still types")
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(f.out.String(), "typed-by-a") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(f.out.String(), "typed-by-a") {
		t.Errorf("the stdout mirror lacks the echo: %q", f.out.String())
	}
}

func readUntil(t *testing.T, r io.Reader, want string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var sb strings.Builder
		buf := make([]byte, 256)
		for !strings.Contains(sb.String(), want) {
			n, err := r.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- sb.String()
	}()
	select {
	case s := <-got:
		return s
	case <-time.After(3 * time.Second):
		return "(timeout)"
	}
}

func TestRequestsAfterTheEndAreRefused(t *testing.T) {
	f := newFixture(t, options{modes: []string{"poweroff-soon"}, powerOnAtStart: true})
	f.wait()
	done := make(chan error, 1)
	go func() { done <- f.c.PowerOn(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrState) {
			t.Errorf("PowerOn after the end: %v, want ErrState", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("PowerOn after the end blocks")
	}
}

func TestDisplayWithoutGraphics(t *testing.T) {
	f := newFixture(t, options{keepAlive: true})
	if _, err := f.c.DialDisplay(ctx); !errors.Is(err, ErrState) {
		t.Errorf("DialDisplay with GRAPHICS=none: %v, want ErrState", err)
	}
	if err := f.c.SetDisplayPassword(ctx, "abc"); !errors.Is(err, ErrState) {
		t.Errorf("SetDisplayPassword with GRAPHICS=none: %v, want ErrState", err)
	}
}

func TestDisplayPasswordLiveAndOff(t *testing.T) {
	f := newFixture(t, options{keepAlive: true, env: map[string]string{"GRAPHICS": "vnc", "VNC_PORT": "5999", "VNC_LISTEN": "127.0.0.1"}})
	var followed []string
	f.c.FollowDisplayPassword(func(pw string) { followed = append(followed, pw) })
	kept := func() string {
		b, err := os.ReadFile(f.plan.Paths.VNCPassword)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, bad := range []string{"", "nine-char", "tab\there", "é"} {
		if err := f.c.SetDisplayPassword(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetDisplayPassword(%q): %v, want ErrInvalid", bad, err)
		} else if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("the refusal shows the password: %v", err)
		}
	}
	if _, err := f.c.DialDisplay(ctx); !errors.Is(err, ErrState) {
		t.Errorf("DialDisplay while off: %v, want ErrState", err)
	}
	if err := f.c.SetDisplayPassword(ctx, "off-pw"); err != nil {
		t.Fatal(err)
	}
	if k := kept(); k != "off-pw" {
		t.Errorf("kept %q after a change while off", k)
	}

	if err := f.c.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	f.waitPower(Running)
	conn, err := f.c.DialDisplay(ctx)
	if err != nil {
		t.Fatal(err)
	}
	greeting, _ := io.ReadAll(conn)
	conn.Close()
	if string(greeting) != "RFB 003.008\n" {
		t.Errorf("display socket said %q, want plain RFB", greeting)
	}
	if err := f.c.SetDisplayPassword(ctx, "live-pw"); err != nil {
		t.Fatal(err)
	}
	if log := f.qmpLog(); !strings.Contains(log, `set_password {"display":"vnc0","password":"live-pw","protocol":"vnc"}`) {
		t.Errorf("QMP log: %q", log)
	}
	if k := kept(); k != "live-pw" {
		t.Errorf("kept %q after a live change", k)
	}
	if strings.Join(followed, ",") != "off-pw,live-pw" {
		t.Errorf("followers learnt %q", followed)
	}
	for _, e := range f.logs.All() {
		if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, "live-pw") || strings.Contains(line, "off-pw") {
			t.Errorf("logged: %s", line)
		}
	}
}

// TestGuestExecFollowsTheRun: no command runs while the VM is off; while
// it runs, the run's agent client answers (this fake QEMU makes no agent
// socket: ErrNoChannel), and the client goes with the run.
func TestGuestExecFollowsTheRun(t *testing.T) {
	f := newFixture(t, options{keepAlive: true})
	time.Sleep(50 * time.Millisecond)
	cmd := guestagent.Command{Path: "true"}
	if _, err := f.c.GuestExec(ctx, cmd); !errors.Is(err, ErrState) {
		t.Errorf("exec while off: %v, want ErrState", err)
	}
	if err := f.c.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.GuestExec(ctx, cmd); !errors.Is(err, guestagent.ErrNoChannel) {
		t.Errorf("exec without an agent socket: %v, want ErrNoChannel", err)
	}
	if err := f.c.PowerOff(ctx, false); err != nil {
		t.Fatal(err)
	}
	f.waitPower(Off)
	if _, err := f.c.GuestExec(ctx, cmd); !errors.Is(err, ErrState) {
		t.Errorf("exec after the run: %v, want ErrState", err)
	}
}
