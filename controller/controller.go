package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/guestagent"
	"github.com/vmrunner/vmrunner/qemu"
	"github.com/vmrunner/vmrunner/supervisor"
	"github.com/vmrunner/vmrunner/vm"
)

// Timings of the stop policy and of QMP; variables so tests can shorten them.
var (
	// forceGrace is how long QEMU gets to honour QMP quit before SIGKILL.
	forceGrace = 3 * time.Second
	// qmpTimeout bounds a QMP command: a hung QEMU must not hang the
	// controller.
	qmpTimeout = 5 * time.Second
	// qmpConnectTimeout bounds the wait for a started QEMU's QMP socket.
	qmpConnectTimeout = 10 * time.Second
)

// Options are what a controller needs; Plan and Prepared come from the
// once-per-VM start-up (vm.Prepare), which the caller releases after Run.
type Options struct {
	Plan     *vm.Plan
	Prepared *vm.Prepared
	Reaper   *supervisor.Reaper
	Log      *zap.Logger
	// Console mirrors the guest's serial output (the container's stdout);
	// a slow or closed one never stalls the guest.
	Console io.Writer
	// KeepAlive keeps the controller up with the VM off when QEMU ends
	// (KEEP_ALIVE_AFTER_VM_STOP); without it Run returns then.
	KeepAlive bool
	// PowerOnAtStart starts QEMU as soon as Run begins (POWER_ON_AT_START).
	PowerOnAtStart bool
	// Confine decides who QEMU runs as for a run's spec (the files it
	// opens by path handed to that user) and says so for the log; nil
	// keeps QEMU as vmrunner's user.
	Confine func(spec qemu.Spec, base string) (*syscall.Credential, string, error)
	// FetchMedia brings an http(s) medium into the image cache and returns
	// its local path; nil refuses URLs.
	FetchMedia func(ctx context.Context, url string) (string, error)
}

// Controller owns one VM across QEMU runs. Every change runs in the
// goroutine of Run, one at a time.
type Controller struct {
	o      Options
	log    *zap.Logger
	reqs   chan func()
	qmpEvs chan runEvent
	ends   chan struct{} // Shutdown requests (signals, Ctrl-])
	over   chan struct{} // closed when Run has returned
	serial *serialHub

	mu     sync.Mutex // guards status, subs and agent
	status Status
	// agent is the current run's guest agent client; nil when no QEMU
	// runs or it has no agent channel. Calls on it run outside the loop:
	// a guest command may take minutes.
	agent  *guestagent.Client
	subs   map[int]chan Event
	nextID int
	// pwFollowers learn each new display password.
	pwFollowers []func(string)

	// Owned by Run's goroutine.
	cur       *run
	gen       int
	boot      BootOverride
	bootMode  config.BootMode
	media     Media
	restart   bool // power on again once the current run has ended
	ending    bool // Run returns once the VM is off
	exitCode  int
	startedOK bool
	startErr  error // why the last power-on failed
}

// run is one QEMU process and what its start made.
type run struct {
	gen       int
	proc      *supervisor.Process
	made      *vm.Run
	mon       *qemu.Monitor
	settings  vm.Settings
	started   time.Time
	stopping  bool
	forced    bool
	deadline  <-chan time.Time
	agentAsk  <-chan time.Time // halfway to deadline: ask the guest agent
	killTimer <-chan time.Time
	shutdown  string        // the reason of QMP's SHUTDOWN event
	endWatch  func()        // stops watchGuest
	agentOpen chan struct{} // to watchGuest: the guest opened the agent's port
	qmpGone   bool          // QMP never connected and never will (QEMU ended)
	// STOP and RESUME events still to come for our own stop and cont:
	// QEMU sends them beside the command's reply, so one may reach us
	// after a later command already changed the state back.
	ownStops, ownResumes int
}

type runEvent struct {
	gen int
	ev  qemu.Event
}

// New makes a controller for the prepared VM; Run drives it.
func New(o Options) *Controller {
	p := o.Plan
	c := &Controller{
		o:      o,
		log:    o.Log,
		reqs:   make(chan func()),
		qmpEvs: make(chan runEvent, 256),
		ends:   make(chan struct{}, 2),
		over:   make(chan struct{}),
		serial: newSerialHub(),
		subs:   map[int]chan Event{},
	}
	first := vm.FirstSettings(o.Prepared)
	if first.Medium != "" {
		c.media = Media{Source: first.Medium, Path: first.Medium}
	}
	c.bootMode = p.Config.BootMode
	c.status = Status{
		Name:      p.Config.GuestName,
		UUID:      o.Prepared.UUID,
		Power:     Off,
		Since:     time.Now(),
		Accel:     p.Spec.Accel,
		MemoryMiB: p.Spec.MemoryMiB,
		CPUs:      p.Spec.CPUs,
		BootMode:  c.bootMode,
		Media:     c.media,
		NICs:      nics(p),
	}
	return c
}

func nics(p *vm.Plan) []NIC {
	out := []NIC{}
	for i, n := range p.NICs {
		nic := NIC{Index: n.Index, Mode: string(n.Mode), MAC: n.MAC.String()}
		if u, ok := p.Spec.NICs[i].Backend.(qemu.UserNet); ok {
			for _, f := range u.Forwards {
				nic.Forwards = append(nic.Forwards, fmt.Sprintf("%s %s:%d -> %d", f.Proto, f.HostAddr, f.HostPort, f.GuestPort))
			}
		}
		out = append(out, nic)
	}
	return out
}

// Shutdown asks the controller to end, as SIGTERM does: the first call
// stops the VM gracefully (then Run returns), a second stops it by force.
// It never blocks.
func (c *Controller) Shutdown() {
	select {
	case c.ends <- struct{}{}:
	default:
	}
}

// SerialInput types into the running guest's serial console (the
// terminal's keystrokes); without a run the bytes are dropped.
func (c *Controller) SerialInput() io.Writer { return c.serial.input() }

// StartError is why the last power-on failed, nil if none did. Call it
// once Run has returned, e.g. to print a configuration error.
func (c *Controller) StartError() error { return c.startErr }

// Started says whether QEMU ever started; when not, a failed first start
// should undo the once-per-VM start-up too (vm.Prepared.Undo).
func (c *Controller) Started() bool { return c.startedOK }

// Run drives the VM until the controller ends and returns the process's
// exit status (supervisor.Exit…): without KeepAlive once QEMU has ended,
// with it once a Shutdown has stopped the VM.
func (c *Controller) Run(ctx context.Context) int {
	defer close(c.over)
	if c.o.PowerOnAtStart {
		if err := c.powerOn("power on at start"); err != nil {
			if !c.o.KeepAlive {
				return c.exitCode
			}
		}
	}
	for {
		if c.cur == nil && (c.ending || (!c.o.KeepAlive && c.startedOK)) {
			return c.exitCode
		}
		var (
			done      <-chan struct{}
			deadline  <-chan time.Time
			agentAsk  <-chan time.Time
			killTimer <-chan time.Time
			late      <-chan *qemu.Monitor
		)
		if r := c.cur; r != nil {
			done, deadline, agentAsk, killTimer = r.proc.Done(), r.deadline, r.agentAsk, r.killTimer
			if r.mon == nil && !r.qmpGone {
				late = r.proc.QMP
			}
		}
		select {
		case fn := <-c.reqs:
			fn()
		case e := <-c.qmpEvs:
			c.onEvent(e)
		case <-c.ends:
			c.onShutdown()
		case <-ctx.Done():
			c.onShutdown()
			ctx = context.Background() // once
		case <-agentAsk:
			c.cur.agentAsk = nil
			c.askAgentShutdown()
		case <-deadline:
			c.force(fmt.Sprintf("guest did not power off within %s", c.o.Plan.Config.ShutdownTimeout))
		case <-killTimer:
			c.log.Warn("QEMU ignored quit: SIGKILL")
			_ = c.cur.proc.Kill()
			c.cur.killTimer = nil
		case m, ok := <-late:
			c.onLateQMP(m, ok)
		case <-done:
			c.onExit()
		}
	}
}

// onLateQMP takes a QMP connection that came after powerOn stopped
// waiting (a slow QEMU), and sends what a stop meanwhile needed.
func (c *Controller) onLateQMP(m *qemu.Monitor, ok bool) {
	r := c.cur
	if !ok {
		r.qmpGone = true
		return
	}
	r.mon = m
	c.log.Info("QMP connected late", zap.Duration("after", time.Since(r.started)))
	c.restrictAgent(r.made.Spec.GuestAgent)
	switch {
	case r.forced:
		go func() { _ = m.Quit() }()
		r.killTimer = time.After(forceGrace)
	case r.stopping:
		go func() {
			if err := m.Powerdown(); err != nil {
				c.log.Warn("system_powerdown failed", zap.Error(err))
			}
		}()
	}
}

// do runs fn in the controller's goroutine and returns its error.
func (c *Controller) do(ctx context.Context, fn func() error) error {
	errc := make(chan error, 1)
	select {
	case c.reqs <- func() { errc <- fn() }:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.over:
		return fmt.Errorf("%w: vmrunner is ending", ErrState)
	}
	return <-errc
}

// setPower records a transition: one log line, one event.
func (c *Controller) setPower(to PowerState, reason string) {
	c.mu.Lock()
	from := c.status.Power
	now := time.Now()
	c.status.Power, c.status.Since = to, now
	c.status.PID, c.status.StartedAt = 0, time.Time{}
	if r := c.cur; r != nil {
		c.status.PID, c.status.StartedAt = r.proc.PID, r.started
	}
	ev := Event{Time: now, From: from, To: to, Reason: reason}
	for _, ch := range c.subs {
		select {
		case ch <- ev:
		default: // a subscriber that does not read loses events, never stalls us
		}
	}
	c.mu.Unlock()
	c.log.Info("power", zap.String("from", string(from)), zap.String("to", string(to)), zap.String("reason", reason))
}

func (c *Controller) power() PowerState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status.Power
}

// settings are the next start's.
func (c *Controller) settings() vm.Settings {
	return vm.Settings{Boot: qemu.BootDevice(c.boot.Device), BootMode: c.bootMode, Medium: c.media.Path}
}

// powerOn runs the per-run start-up and starts QEMU; it returns once QMP
// answers (or QEMU has ended).
func (c *Controller) powerOn(reason string) error {
	p := c.o.Plan
	c.setPower(Starting, reason)
	s := c.settings()
	made, err := vm.StartRun(context.Background(), p, c.o.Prepared, s)
	if err != nil {
		return c.startFailed("preparing the run", err, nil)
	}
	for _, w := range made.Warnings {
		c.log.Warn(w)
	}
	var cred *syscall.Credential
	user := "vmrunner's own user"
	if c.o.Confine != nil {
		if cred, user, err = c.o.Confine(made.Spec, c.o.Prepared.BasePath); err != nil {
			return c.startFailed("confining QEMU", err, made)
		}
	}
	if err := made.StartTPM(c.o.Reaper.Start, cred); err != nil {
		return c.startFailed("starting the TPM", err, made)
	}
	args := qemu.Args(made.Spec)
	c.log.Info("starting QEMU", zap.String("guest", p.Config.GuestName), zap.String("accel", made.Spec.Accel),
		zap.String("user", user), zap.Strings("args", config.RedactArgs(args)))
	c.gen++
	gen := c.gen
	proc, err := supervisor.Start(supervisor.Options{
		Binary:     p.QEMUBinary,
		Args:       args,
		ExtraFiles: made.Files(),
		Credential: cred,
		QMPSocket:  p.Paths.QMP,
		OnEvent: func(ev qemu.Event) {
			select {
			case c.qmpEvs <- runEvent{gen, ev}:
			default:
				c.log.Warn("QMP event dropped", zap.String("event", ev.Event))
			}
		},
		SerialLog:    p.Paths.SerialLog,
		SerialLogMax: p.Config.SerialLogMax,
		Console:      c.o.Console,
		Viewers:      c.serial,
		Reaper:       c.o.Reaper,
		Log:          c.log,
	})
	if err != nil {
		return c.startFailed("starting QEMU", err, made)
	}
	c.log.Info("QEMU started", zap.Int("pid", proc.PID))
	if c.boot.Once {
		c.boot = BootOverride{}
		c.publish()
	}
	r := &run{gen: gen, proc: proc, made: made, settings: s, started: time.Now()}
	c.cur = r
	c.serial.setInput(proc.Stdin)
	if made.Spec.GuestAgent != "" {
		a := guestagent.New(made.Spec.GuestAgent, guestagent.Options{})
		c.mu.Lock()
		c.agent = a
		c.mu.Unlock()
		var ctx context.Context
		ctx, r.endWatch = context.WithCancel(context.Background())
		r.agentOpen = make(chan struct{}, 1)
		go c.watchGuest(ctx, a, r.agentOpen)
	}
	select {
	case m, ok := <-proc.QMP:
		r.mon, r.qmpGone = m, !ok
		if ok {
			c.log.Debug("QMP connected", zap.String("socket", p.Paths.QMP))
			c.restrictAgent(made.Spec.GuestAgent)
		}
	case <-proc.Done():
		// onExit, from the loop, says how it ended.
	case <-time.After(qmpConnectTimeout):
		c.log.Warn("QMP is not connected yet", zap.Duration("waited", qmpConnectTimeout))
	}
	c.startedOK = true
	c.setPower(Running, reason)
	return nil
}

func (c *Controller) startFailed(what string, err error, made *vm.Run) error {
	if made != nil {
		if rerr := made.Release(); rerr != nil {
			c.log.Warn("undoing the run's start-up", zap.Error(rerr))
		}
	}
	var ce *config.Error
	c.startErr = err
	c.exitCode = supervisor.ExitFault
	if errors.As(err, &ce) {
		c.exitCode = supervisor.ExitConfig
		c.log.Error(what, zap.String("configuration", err.Error()))
	} else {
		c.log.Error(what, zap.Error(err))
	}
	c.mu.Lock()
	c.status.LastExit = what + ": " + err.Error()
	c.mu.Unlock()
	c.setPower(Off, what+" failed")
	c.restart = false
	return fmt.Errorf("%s: %w", what, err)
}

// publish copies the loop's settings into the status snapshot.
func (c *Controller) publish() {
	c.mu.Lock()
	c.status.Boot, c.status.BootMode, c.status.Media = c.boot, c.bootMode, c.media
	c.mu.Unlock()
}

func (c *Controller) onExit() {
	r := c.cur
	ws, tail := r.proc.Status()
	hostSignal := r.shutdown == "host-signal" || strings.Contains(tail, "terminating on signal")
	code := supervisor.ExitCode(ws, r.forced, hostSignal)
	reason := ""
	switch {
	case code == supervisor.ExitForced:
		c.log.Warn("QEMU stopped by force", zap.String("status", supervisor.Describe(ws)))
		reason = "stopped by force"
	case code == supervisor.ExitPoweredOff:
		c.log.Info("guest powered off", zap.Bool("after_stop_request", r.stopping))
		reason = "guest powered off"
	case hostSignal:
		c.log.Error("QEMU was stopped by a signal vmrunner did not send", zap.String("status", supervisor.Describe(ws)), zap.String("stderr", tail))
		reason = "QEMU was stopped by a signal vmrunner did not send"
	default:
		c.log.Error("QEMU ended unexpectedly", zap.String("status", supervisor.Describe(ws)), zap.String("stderr", tail))
		reason = "QEMU ended unexpectedly: " + supervisor.Describe(ws)
	}
	if r.mon != nil {
		_ = r.mon.Close()
	}
	if r.endWatch != nil {
		r.endWatch()
	}
	c.mu.Lock()
	c.status.Guest = nil
	if a := c.agent; a != nil {
		// Close waits for a call in flight (up to its timeout); the loop
		// must not. That call fails on the dead socket anyway.
		go func() { _ = a.Close() }()
		c.agent = nil
	}
	c.mu.Unlock()
	c.serial.setInput(nil)
	if err := r.made.Release(); err != nil {
		c.log.Warn("undoing the run's start-up", zap.Error(err))
	}
	c.cur = nil
	c.exitCode = code
	c.mu.Lock()
	c.status.LastExit = reason
	c.mu.Unlock()
	c.setPower(Off, reason)
	if c.restart && !c.ending {
		c.restart = false
		_ = c.powerOn("restart")
		return
	}
	c.restart = false
}

func (c *Controller) onEvent(e runEvent) {
	r := c.cur
	if r == nil || e.gen != r.gen {
		return // a finished run's late event
	}
	c.log.Info("QMP event", zap.String("event", e.ev.Event), zap.Any("data", e.ev.Data))
	switch e.ev.Event {
	case "STOP":
		if r.ownStops > 0 {
			r.ownStops--
			return
		}
		if c.power() == Running {
			c.setPower(Paused, "vCPUs stopped")
		}
	case "RESUME":
		if r.ownResumes > 0 {
			r.ownResumes--
			return
		}
		if c.power() == Paused {
			c.setPower(Running, "vCPUs resumed")
		}
	case "SHUTDOWN":
		if reason, ok := e.ev.Data["reason"].(string); ok {
			r.shutdown = reason
		}
	case "VSERPORT_CHANGE":
		if e.ev.Data["id"] == qemu.GuestAgentPort && e.ev.Data["open"] == true && r.agentOpen != nil {
			select {
			case r.agentOpen <- struct{}{}:
			default: // a round is already due
			}
		}
	}
}

func (c *Controller) onShutdown() {
	r := c.cur
	if c.ending && r != nil {
		c.force("second stop request")
		return
	}
	c.ending = true
	if r == nil {
		c.exitCode = supervisor.ExitPoweredOff // the VM is off, as asked
		return
	}
	c.stop(true, "stop requested")
}

// stop starts the stop policy: the ACPI power button, then after
// SHUTDOWN_TIMEOUT quit, then SIGKILL; graceful=false skips the button.
func (c *Controller) stop(graceful bool, reason string) {
	r := c.cur
	if !graceful {
		c.force(reason)
		return
	}
	if r.stopping {
		return
	}
	r.stopping = true
	timeout := c.o.Plan.Config.ShutdownTimeout
	c.log.Info("stop requested: pressing the ACPI power button", zap.Duration("timeout", timeout))
	r.deadline = time.After(timeout)
	r.agentAsk = time.After(timeout / 2)
	paused := c.power() == Paused
	c.setPower(Stopping, reason)
	if m := r.mon; m != nil {
		// Beside the loop: a QMP that stalls must not keep the deadline
		// from forcing the stop.
		go func() {
			if paused {
				_ = m.Cont() // a paused guest cannot hear the button
			}
			if err := m.Powerdown(); err != nil {
				c.log.Warn("system_powerdown failed", zap.Error(err))
			}
		}()
	}
}

func (c *Controller) force(why string) {
	r := c.cur
	if r == nil || r.forced {
		return
	}
	r.forced, r.stopping, r.deadline, r.agentAsk = true, true, nil, nil
	c.log.Warn("stopping QEMU by force", zap.String("reason", why))
	if c.power() != Stopping {
		c.setPower(Stopping, why)
	}
	if m := r.mon; m != nil {
		go func() { _ = m.Quit() }()
		r.killTimer = time.After(forceGrace)
		return
	}
	_ = r.proc.Kill()
}

// askAgentShutdown is the stop policy's second try: a guest that has
// ignored the ACPI button for half of SHUTDOWN_TIMEOUT (no acpid, a
// desktop asking its absent user) is asked through its agent, if one
// answers, before the deadline forces it.
func (c *Controller) askAgentShutdown() {
	c.mu.Lock()
	a := c.agent
	c.mu.Unlock()
	if a == nil {
		return
	}
	c.log.Info("the guest ignores the ACPI button: asking its guest agent to power off")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), guestagent.DefaultSyncTimeout+qmpTimeout)
		defer cancel()
		if err := a.Shutdown(ctx, guestagent.PowerDown); err != nil {
			c.log.Info("the guest agent did not take the power-off", zap.Error(err))
			return
		}
		c.log.Info("the guest agent took the power-off")
	}()
}

// restrictAgent narrows the agent socket to its owner once QEMU has made
// it: QEMU answers QMP only after creating its chardevs.
func (c *Controller) restrictAgent(path string) {
	if path == "" {
		return
	}
	if err := guestagent.Restrict(path); err != nil {
		c.log.Warn("restricting the guest agent socket", zap.Error(err))
	}
}

// qmp runs a QMP command on the current run, bounded by qmpTimeout.
func (c *Controller) qmp(name string, fn func(*qemu.Monitor) error) error {
	r := c.cur
	if r == nil {
		return ErrState
	}
	if r.mon == nil {
		return fmt.Errorf("%s: QMP is not connected", name)
	}
	errc := make(chan error, 1)
	go func() { errc <- fn(r.mon) }()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	case <-time.After(qmpTimeout):
		return fmt.Errorf("%s: QMP did not answer within %s", name, qmpTimeout)
	}
}

// --- API -------------------------------------------------------------------

var _ API = (*Controller)(nil)

func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.NICs = append([]NIC(nil), s.NICs...)
	return s
}

func (c *Controller) Subscribe() (<-chan Event, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.nextID
	c.nextID++
	ch := make(chan Event, 16)
	c.subs[id] = ch
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			c.mu.Lock()
			delete(c.subs, id)
			c.mu.Unlock()
		})
	}
}

func (c *Controller) PowerOn(ctx context.Context) error {
	return c.do(ctx, func() error {
		if c.cur != nil {
			return fmt.Errorf("%w: the VM is %s", ErrState, c.power())
		}
		return c.powerOn("power on requested")
	})
}

func (c *Controller) PowerOff(ctx context.Context, graceful bool) error {
	return c.do(ctx, func() error {
		if c.cur == nil {
			return fmt.Errorf("%w: the VM is off", ErrState)
		}
		c.restart = false
		reason := "power off requested"
		if !graceful {
			reason = "forced power off requested"
		}
		c.stop(graceful, reason)
		return nil
	})
}

func (c *Controller) Reboot(ctx context.Context) error {
	return c.do(ctx, func() error {
		if c.cur == nil {
			return fmt.Errorf("%w: the VM is off", ErrState)
		}
		c.restart = true
		c.stop(true, "reboot requested")
		return nil
	})
}

func (c *Controller) Reset(ctx context.Context) error {
	return c.do(ctx, func() error {
		r := c.cur
		if r == nil || c.power() == Stopping {
			return fmt.Errorf("%w: the VM is %s", ErrState, c.power())
		}
		next := c.settings()
		if next.Boot != r.settings.Boot || next.BootMode != r.settings.BootMode {
			// QEMU reads the boot order and firmware only when it starts.
			c.restart = true
			c.force("reset with a new boot setting: restarting QEMU")
			return nil
		}
		if err := c.qmp("system_reset", (*qemu.Monitor).Reset); err != nil {
			return err
		}
		c.log.Info("reset")
		return nil
	})
}

func (c *Controller) NMI(ctx context.Context) error {
	return c.do(ctx, func() error {
		if p := c.power(); p != Running && p != Paused {
			return fmt.Errorf("%w: the VM is %s", ErrState, p)
		}
		return c.qmp("inject-nmi", (*qemu.Monitor).NMI)
	})
}

func (c *Controller) Pause(ctx context.Context) error {
	return c.do(ctx, func() error {
		if p := c.power(); p != Running {
			return fmt.Errorf("%w: the VM is %s", ErrState, p)
		}
		if err := c.qmp("stop", (*qemu.Monitor).Stop); err != nil {
			return err
		}
		c.cur.ownStops++
		c.setPower(Paused, "pause requested")
		return nil
	})
}

func (c *Controller) Resume(ctx context.Context) error {
	return c.do(ctx, func() error {
		if p := c.power(); p != Paused {
			return fmt.Errorf("%w: the VM is %s", ErrState, p)
		}
		if err := c.qmp("cont", (*qemu.Monitor).Cont); err != nil {
			return err
		}
		c.cur.ownResumes++
		c.setPower(Running, "resume requested")
		return nil
	})
}

func (c *Controller) SetBoot(ctx context.Context, b BootOverride) error {
	switch b.Device {
	case BootDefault, BootDisk, BootCD, BootNetwork:
	default:
		return fmt.Errorf("%w: boot device %q: accepted: disk, cd, network or default", ErrInvalid, b.Device)
	}
	if b.Device == BootDefault {
		b.Once = false
	}
	return c.do(ctx, func() error {
		c.boot = b
		c.publish()
		c.log.Info("boot override", zap.String("device", string(b.Device)), zap.Bool("once", b.Once))
		return nil
	})
}

func (c *Controller) SetBootMode(ctx context.Context, m config.BootMode) error {
	switch m {
	case config.BootLegacy:
		if c.o.Plan.Arch == config.ArchAArch64 && c.o.Plan.Config.Kernel == "" {
			return fmt.Errorf("%w: boot mode legacy: an aarch64 guest has no BIOS (only a KERNEL boots without firmware); accepted: uefi", ErrInvalid)
		}
	case config.BootUEFI, config.BootSecure:
		if _, ok := c.o.Plan.Firmwares[m]; !ok {
			return fmt.Errorf("%w: boot mode %s: no UEFI firmware on this host (install OVMF); accepted: legacy", ErrInvalid, m)
		}
	default:
		return fmt.Errorf("%w: boot mode %q: accepted: uefi, legacy or secure", ErrInvalid, m)
	}
	return c.do(ctx, func() error {
		c.bootMode = m
		c.publish()
		c.log.Info("boot mode", zap.String("mode", string(m)))
		return nil
	})
}

func (c *Controller) InsertMedia(ctx context.Context, source string) error {
	path, err := c.mediumPath(ctx, source)
	if err != nil {
		return err
	}
	return c.do(ctx, func() error {
		if c.cur != nil && c.cur.mon != nil {
			if err := c.qmp("blockdev-change-medium", func(m *qemu.Monitor) error { return m.ChangeMedium(qemu.CDDevice, path) }); err != nil {
				return err
			}
		}
		c.media = Media{Source: source, Path: path}
		c.publish()
		c.log.Info("medium inserted", zap.String("source", source), zap.String("path", path), zap.Bool("live", c.cur != nil))
		return nil
	})
}

// mediumPath turns a medium's source into a local file: an http(s) URL is
// fetched into the image cache (outside the controller's goroutine, so a
// download blocks no other request); a local path must be a regular file.
func (c *Controller) mediumPath(ctx context.Context, source string) (string, error) {
	switch {
	case strings.HasPrefix(source, "http://"), strings.HasPrefix(source, "https://"):
		if c.o.FetchMedia == nil {
			return "", fmt.Errorf("%w: %s: URLs are not enabled here; accepted: a local path", ErrInvalid, source)
		}
		return c.o.FetchMedia(ctx, source)
	case strings.Contains(source, "://"):
		return "", fmt.Errorf("%w: medium %q: accepted: an http(s) URL or a local path", ErrInvalid, source)
	case !filepath.IsAbs(source):
		return "", fmt.Errorf("%w: medium %q: accepted: an absolute local path or an http(s) URL", ErrInvalid, source)
	}
	st, err := os.Stat(source)
	if err != nil {
		return "", fmt.Errorf("%w: medium: %v", ErrInvalid, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%w: medium %s is not a regular file", ErrInvalid, source)
	}
	return source, nil
}

func (c *Controller) EjectMedia(ctx context.Context) error {
	return c.do(ctx, func() error {
		if c.cur != nil && c.cur.mon != nil {
			if err := c.qmp("eject", func(m *qemu.Monitor) error { return m.Eject(qemu.CDDevice) }); err != nil {
				return err
			}
		}
		c.media = Media{}
		c.publish()
		c.log.Info("medium ejected", zap.Bool("live", c.cur != nil))
		return nil
	})
}

func (c *Controller) AttachSerial(ctx context.Context) (io.ReadWriteCloser, error) {
	return c.serial.attach(), nil
}

// GuestExec runs cmd in the guest through the current run's agent,
// outside the controller's goroutine.
func (c *Controller) GuestExec(ctx context.Context, cmd guestagent.Command) (guestagent.Result, error) {
	c.mu.Lock()
	a, power := c.agent, c.status.Power
	c.mu.Unlock()
	switch {
	case power == Off || power == Starting:
		return guestagent.Result{}, fmt.Errorf("%w: the VM is %s", ErrState, power)
	case a == nil:
		return guestagent.Result{}, fmt.Errorf("this VM has no agent channel: %w", guestagent.ErrNoChannel)
	}
	return a.Exec(ctx, cmd)
}

// DialDisplay connects to the running QEMU's second VNC listener, the unix
// socket in the state folder that has no VNC auth (the caller asks for
// its own): plain RFB bytes, no websocket framing.
func (c *Controller) DialDisplay(ctx context.Context) (net.Conn, error) {
	d := c.o.Plan.Spec.Display
	if d == nil || d.Socket == "" {
		return nil, fmt.Errorf("%w: the VM has no display socket (GRAPHICS=%s)", ErrState, c.o.Plan.Config.Console.Graphics)
	}
	if p := c.power(); p != Running && p != Paused {
		return nil, fmt.Errorf("%w: the VM is %s", ErrState, p)
	}
	// QEMU listens with a backlog of 1: viewers connecting at once find
	// the queue full (EAGAIN on a unix socket) until its main loop has
	// accepted the one before.
	var dialer net.Dialer
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		c, err := dialer.DialContext(ctx, "unix", d.Socket)
		if !errors.Is(err, syscall.EAGAIN) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// SetDisplayPassword changes the password of the TCP VNC listener at once
// (QMP set_password; viewers already in stay) and keeps it in the state
// folder for the next starts, where QEMU's secret object reads it. With
// the VM off only the kept one changes. Those following it (the web
// console without NOVNC_PASSWORD) are told.
func (c *Controller) SetDisplayPassword(ctx context.Context, password string) error {
	if err := config.CheckVNCPassword(password); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	d := c.o.Plan.Spec.Display
	if d == nil {
		return fmt.Errorf("%w: the VM has no display (GRAPHICS=none)", ErrState)
	}
	return c.do(ctx, func() error {
		if c.cur != nil && c.cur.mon != nil && d.VNCDisplay >= 0 {
			if err := c.qmp("set VNC password", func(m *qemu.Monitor) error {
				return m.SetVNCPassword(qemu.VNCDisplayTCP, password)
			}); err != nil {
				return err
			}
		}
		if err := c.o.Plan.Paths.SaveVNCPassword(password); err != nil {
			return fmt.Errorf("keeping the VNC password for the next starts: %w", err)
		}
		c.mu.Lock()
		follow := c.pwFollowers
		c.mu.Unlock()
		for _, f := range follow {
			f(password)
		}
		c.log.Info("VNC password changed", zap.Bool("live", c.cur != nil))
		return nil
	})
}

// FollowDisplayPassword has fn called with each password SetDisplayPassword
// sets, e.g. by a web console whose own password is the VNC one.
func (c *Controller) FollowDisplayPassword(fn func(password string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pwFollowers = append(c.pwFollowers, fn)
}
