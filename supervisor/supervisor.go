package supervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
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

// Options describes one QEMU process.
type Options struct {
	Binary     string
	Args       []string
	ExtraFiles []*os.File          // become fds 3, 4, … in QEMU
	Credential *syscall.Credential // QEMU's user; nil: vmrunner's
	QMPSocket  string
	OnEvent    func(qemu.Event) // QMP events, from one goroutine
	SerialLog  string           // the guest's console is appended here …
	// SerialLogMax rotates SerialLog to SerialLog.1 beyond this size (0: never).
	SerialLogMax int64
	Console      io.Writer // … mirrored here (stdout) …
	Viewers      io.Writer // … and here (attached consoles); nil: none
	Reaper       *Reaper
	Log          *zap.Logger
}

// Process is one running QEMU: its console drained, its QMP connected as
// soon as QEMU listens, its exit status once it ends. Decisions (when to
// stop, what an exit means) belong to its caller.
type Process struct {
	PID int
	// Stdin types into the guest's serial console.
	Stdin io.Writer
	// QMP receives the connected monitor once; it is closed without one
	// when QMP never answers before QEMU ends.
	QMP <-chan *qemu.Monitor

	done       chan struct{}
	status     unix.WaitStatus
	stderrTail string
}

// Start execs QEMU and returns once it runs.
func Start(o Options) (*Process, error) {
	log := o.Log
	serial, err := OpenRotating(o.SerialLog, o.SerialLogMax)
	if err != nil {
		return nil, fmt.Errorf("opening serial log: %w", err)
	}
	q, err := start(o)
	if err != nil {
		serial.Close()
		return nil, err
	}
	console := NewFanout(func(name, what string, err error) {
		if what == "failed" {
			log.Warn("console output to "+name+" failed: dropping it from now on", zap.Error(err))
			return
		}
		log.Warn(name + " cannot keep up with the console: dropping output")
	}, map[string]io.Writer{"serial.log": serial, "stdout": o.Console, "viewers": o.Viewers})
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		defer serial.Close()
		_, _ = io.Copy(console, q.stdout)
		console.Close(time.Second)
	}()
	stderrTail := make(chan string, 1)
	go func() { stderrTail <- logLines(log, q.stderr) }()

	dialCtx, cancelDial := context.WithCancel(context.Background())
	monCh := make(chan *qemu.Monitor, 1)
	go func() {
		defer close(monCh)
		m, err := qemu.Dial(dialCtx, o.QMPSocket, o.OnEvent)
		if err != nil {
			if dialCtx.Err() == nil {
				log.Warn("QMP unavailable", zap.Error(err))
			}
			return
		}
		monCh <- m
	}()
	p := &Process{PID: q.pid, Stdin: q.stdin, QMP: monCh, done: make(chan struct{})}
	go func() {
		ws := <-q.exit
		cancelDial()
		q.stdin.Close()
		// QEMU's pipes close with it, unless a child of its own still
		// holds them: then stop waiting for the last console bytes.
		drain := time.NewTimer(2 * time.Second)
		defer drain.Stop()
		select {
		case <-consoleDone:
			select {
			case p.stderrTail = <-stderrTail:
			case <-drain.C:
			}
		case <-drain.C:
		}
		p.status = ws
		close(p.done)
	}()
	return p, nil
}

// Done is closed once QEMU has ended and its console is drained.
func (p *Process) Done() <-chan struct{} { return p.done }

// Status is QEMU's wait status and the last lines of its stderr; valid
// once Done is closed.
func (p *Process) Status() (unix.WaitStatus, string) { return p.status, p.stderrTail }

// Kill sends QEMU SIGKILL.
func (p *Process) Kill() error { return unix.Kill(p.PID, unix.SIGKILL) }

// Describe says how a wait status ended a process, for logs.
func Describe(ws unix.WaitStatus) string { return describe(ws) }

// ExitCode is the contract's exit status of a QEMU run that ended with ws;
// forced: the run was stopped by force (quit or SIGKILL). QEMU turns
// SIGTERM, SIGINT and SIGHUP into a clean exit 0; vmrunner never sends them
// (it stops QEMU over QMP or with SIGKILL), so such an exit (hostSignal) was
// someone else killing the VM: a fault, not a power-off.
func ExitCode(ws unix.WaitStatus, forced, hostSignal bool) int {
	switch {
	case forced:
		return ExitForced
	case hostSignal:
		return ExitFault
	case ws.Exited() && ws.ExitStatus() == 0:
		return ExitPoweredOff
	default:
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
	// Go switches to Credential before it arms Pdeathsig, which a change
	// of user would clear.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true, Credential: o.Credential}
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
