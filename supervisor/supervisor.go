package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/vmrunner/vmrunner/qemu"
)

// Exit statuses of the contract.
const (
	ExitPoweredOff = 0
	ExitFault      = 1
	ExitConfig     = 2
	ExitForced     = 3
)

// forceGrace is how long QEMU gets to honour QMP quit before SIGKILL.
const forceGrace = 3 * time.Second

// Options describes one supervised QEMU run.
type Options struct {
	Binary          string
	Args            []string
	ExtraFiles      []*os.File // become fds 3, 4, … in QEMU
	QMPSocket       string
	SerialLog       string    // the guest's console is appended here …
	SerialLogMax    int64     // … rotated to SerialLog.1 beyond this size (0: never) …
	Console         io.Writer // … and mirrored here
	Input           io.Reader // typed into the serial console; nil: nothing
	StopRequests    <-chan struct{}
	ShutdownTimeout time.Duration
	Reaper          *Reaper
	Log             *zap.Logger
}

// Run starts QEMU and supervises it until it ends; it returns the
// contract's exit status.
func Run(ctx context.Context, o Options) int {
	log := o.Log
	serial, err := OpenRotating(o.SerialLog, o.SerialLogMax)
	if err != nil {
		log.Error("opening serial log", zap.Error(err))
		return ExitFault
	}
	defer serial.Close()

	q, err := start(o)
	if err != nil {
		log.Error("starting QEMU", zap.Error(err))
		return ExitFault
	}
	log.Info("QEMU started", zap.Int("pid", q.pid))
	console := NewFanout(func(name, what string, err error) {
		if what == "failed" {
			log.Warn("console output to "+name+" failed: dropping it from now on", zap.Error(err))
			return
		}
		log.Warn(name + " cannot keep up with the console: dropping output")
	}, map[string]io.Writer{"serial.log": serial, "stdout": o.Console})
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		_, _ = io.Copy(console, q.stdout)
		console.Close(time.Second)
	}()
	stderrTail := make(chan string, 1)
	go func() { stderrTail <- logLines(log, q.stderr) }()
	if o.Input != nil {
		go func() { _, _ = io.Copy(q.stdin, o.Input) }()
	}

	dialCtx, cancelDial := context.WithCancel(ctx)
	defer cancelDial()
	monCh := make(chan *qemu.Monitor, 1)
	var shutdownReason atomic.Value // QMP SHUTDOWN's reason, e.g. guest-shutdown, host-signal
	go func() {
		m, err := qemu.Dial(dialCtx, o.QMPSocket, func(ev qemu.Event) {
			log.Info("QMP event", zap.String("event", ev.Event), zap.Any("data", ev.Data))
			if r, ok := ev.Data["reason"].(string); ok && ev.Event == "SHUTDOWN" {
				shutdownReason.Store(r)
			}
		})
		if err != nil {
			if dialCtx.Err() == nil {
				log.Warn("QMP unavailable", zap.Error(err))
			}
			return
		}
		monCh <- m
	}()

	var (
		mon       *qemu.Monitor
		stopping  bool
		forced    bool
		deadline  <-chan time.Time
		killTimer <-chan time.Time
	)
	defer func() {
		if mon != nil {
			mon.Close()
		}
	}()
	// powerdown runs beside the loop: a QMP that stalls must not keep the
	// deadline from forcing the stop.
	powerdown := func(m *qemu.Monitor) {
		go func() {
			if err := m.Powerdown(); err != nil {
				log.Warn("system_powerdown failed", zap.Error(err))
			}
		}()
	}
	force := func(why string) {
		if forced {
			return
		}
		forced = true
		log.Warn("stopping QEMU by force", zap.String("reason", why))
		if mon != nil {
			go func() { _ = mon.Quit() }()
		}
		killTimer = time.After(forceGrace)
	}
	for {
		select {
		case m := <-monCh:
			mon = m
			log.Debug("QMP connected", zap.String("socket", o.QMPSocket))
			if stopping && !forced {
				powerdown(mon)
			}
		case <-o.StopRequests:
			if stopping {
				force("second stop request")
				continue
			}
			stopping = true
			log.Info("stop requested: pressing the ACPI power button", zap.Duration("timeout", o.ShutdownTimeout))
			deadline = time.After(o.ShutdownTimeout)
			if mon != nil {
				powerdown(mon)
			}
		case <-deadline:
			force(fmt.Sprintf("guest did not power off within %s", o.ShutdownTimeout))
		case <-killTimer:
			log.Warn("QEMU ignored quit: SIGKILL")
			_ = unix.Kill(q.pid, unix.SIGKILL)
			killTimer = nil
		case ws := <-q.exit:
			cancelDial()
			// QEMU's pipes close with it, unless a child of its own still
			// holds them: then stop waiting for the last console bytes.
			tail := ""
			drain := time.NewTimer(2 * time.Second)
			defer drain.Stop()
			select {
			case <-consoleDone:
				select {
				case tail = <-stderrTail:
				case <-drain.C:
				}
			case <-drain.C:
			}
			reason, _ := shutdownReason.Load().(string)
			return exitCode(log, ws, stopping, forced, reason == "host-signal" || strings.Contains(tail, "terminating on signal"), tail)
		}
	}
}

// exitCode maps how QEMU ended to the contract's status. QEMU turns
// SIGTERM, SIGINT and SIGHUP into a clean exit 0; vmrunner never sends them
// (it stops QEMU over QMP or with SIGKILL), so such an exit (hostSignal) was
// someone else killing the VM: a fault, not a power-off.
func exitCode(log *zap.Logger, ws unix.WaitStatus, stopping, forced, hostSignal bool, stderrTail string) int {
	switch {
	case forced:
		log.Warn("QEMU stopped by force", zap.String("status", describe(ws)))
		return ExitForced
	case hostSignal:
		log.Error("QEMU was stopped by a signal vmrunner did not send", zap.String("status", describe(ws)), zap.String("stderr", stderrTail))
		return ExitFault
	case ws.Exited() && ws.ExitStatus() == 0:
		log.Info("guest powered off", zap.Bool("after_stop_request", stopping))
		return ExitPoweredOff
	default:
		log.Error("QEMU ended unexpectedly", zap.String("status", describe(ws)), zap.String("stderr", stderrTail))
		return ExitFault
	}
}

type process struct {
	pid            int
	stdin          io.WriteCloser
	stdout, stderr io.ReadCloser
	exit           <-chan unix.WaitStatus
}

// start execs QEMU from a goroutine locked to its OS thread for QEMU's
// whole life: Pdeathsig fires when the forking *thread* exits, so the
// thread must outlive QEMU, yet the supervisor's death still kills QEMU.
func start(o Options) (*process, error) {
	cmd := exec.Command(o.Binary, o.Args...)
	cmd.ExtraFiles = o.ExtraFiles
	// Its own process group: a terminal's Ctrl-C or a signal to our group
	// (timeout, a shell's job control) reaches only vmrunner, which then
	// stops the guest properly.
	cmd.Env = qemu.ChildEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var p process
	var childEnds []*os.File
	pipe := func(childReads bool) (*os.File, *os.File, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, err
		}
		if childReads {
			childEnds = append(childEnds, r)
			return r, w, nil
		}
		childEnds = append(childEnds, w)
		return w, r, nil
	}
	closeAll := func() {
		for _, f := range childEnds {
			f.Close()
		}
	}
	defer closeAll()
	var err error
	var in, out, errf *os.File
	var stdin, stdout, stderr *os.File
	if in, stdin, err = pipe(true); err != nil {
		return nil, err
	}
	if out, stdout, err = pipe(false); err != nil {
		return nil, err
	}
	if errf, stderr, err = pipe(false); err != nil {
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, out, errf

	type result struct {
		exit <-chan unix.WaitStatus
		err  error
	}
	started := make(chan result)
	exit := make(chan unix.WaitStatus, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with QEMU
		ch, err := o.Reaper.Start(cmd)
		started <- result{ch, err}
		if err == nil {
			exit <- <-ch
		}
	}()
	res := <-started
	if res.err != nil {
		stdin.Close()
		stdout.Close()
		stderr.Close()
		return nil, res.err
	}
	p.pid = cmd.Process.Pid
	p.stdin, p.stdout, p.stderr, p.exit = stdin, stdout, stderr, exit
	return &p, nil
}

// logLines logs QEMU's stderr line by line and returns the last lines, for
// the message when QEMU dies.
func logLines(log *zap.Logger, r io.Reader) string {
	var tail []string
	readLines(r, func(line string) {
		log.Warn("qemu", zap.String("stderr", line))
		tail = append(tail, line)
		if len(tail) > 5 {
			tail = tail[1:]
		}
	})
	return strings.Join(tail, "\n")
}

// ErrNotRunning is returned by Health when the VM is not running.
var ErrNotRunning = errors.New("VM is not running")

// Health asks the VM's probe QMP socket whether the guest is running.
func Health(ctx context.Context, socket string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := os.Stat(socket); err != nil {
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	m, err := qemu.Dial(ctx, socket, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	defer m.Close()
	st, err := m.QueryStatus()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	if !st.Running {
		return fmt.Errorf("%w: status %s", ErrNotRunning, st.Status)
	}
	return nil
}
