// Command vmrunner runs one QEMU virtual machine and supervises it: the
// contract is shared/spec/interface.md, summarised in the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/image"
	"github.com/vmrunner/vmrunner/netcfg"
	"github.com/vmrunner/vmrunner/qemu"
	"github.com/vmrunner/vmrunner/supervisor"
	"github.com/vmrunner/vmrunner/vm"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `usage: vmrunner [--dry-run | --show-config | --list-distros | --help | --version]
       vmrunner health

Runs one QEMU VM configured by environment variables (see --help).
`

func main() {
	// What vmrunner and its children make (state files, sockets, the
	// cache) is this user's alone.
	unix.Umask(0o077)
	os.Exit(run(os.Args[1:], os.Environ()))
}

func run(args []string, environ []string) int {
	mode := ""
	switch len(args) {
	case 0:
	case 1:
		mode = args[0]
	default:
		fmt.Fprint(os.Stderr, usage)
		return supervisor.ExitConfig
	}
	switch mode {
	case "", "--dry-run", "--show-config", "health":
	case "--help", "-h", "help":
		fmt.Print(usage + "\nEnvironment:\n")
		_ = config.WriteHelp(os.Stdout)
		return 0
	case "--version", "version":
		fmt.Println(versionString())
		return 0
	case "--list-distros":
		return listDistros(config.EnvMap(environ)["CATALOG"])
	default:
		fmt.Fprintf(os.Stderr, "vmrunner: unknown argument %q\n%s", mode, usage)
		return supervisor.ExitConfig
	}

	if mode == "health" {
		return health(environ)
	}
	cfg, err := config.Load(config.EnvMap(environ), config.ProbeHost())
	if err != nil {
		return configError(err)
	}
	if mode == "--show-config" {
		_ = config.WriteShow(os.Stdout, cfg)
		return 0
	}

	log := newLogger(cfg)
	defer func() { _ = log.Sync() }()
	plan, err := vm.MakePlan(cfg, probeFacts(cfg, log))
	if err != nil {
		return configError(err)
	}
	if mode == "--dry-run" {
		for _, w := range plan.Warnings {
			log.Warn(w)
		}
		plan.ApplyLocalBase()
		fmt.Println(shellQuote(append([]string{cfg.QEMUBinary}, qemu.Args(plan.Spec)...)))
		return 0
	}
	return supervise(plan, log)
}

// health exits 0 while the VM of DATA_DIR and GUEST_NAME runs. It reads
// nothing else of the configuration (see config.LoadState).
func health(environ []string) int {
	cfg, err := config.LoadState(config.EnvMap(environ), config.ProbeHost())
	if err != nil {
		return configError(err)
	}
	if err := supervisor.Health(context.Background(), vm.PathsFor(cfg).QMPProbe); err != nil {
		fmt.Fprintln(os.Stderr, "vmrunner health:", err)
		return 1
	}
	return 0
}

func supervise(plan *vm.Plan, log *zap.Logger) int {
	started := time.Now()
	// Signals are caught before start-up so a stop during it still undoes
	// what was made (links, fresh files) instead of killing us half-way.
	stop := make(chan struct{}, 2)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	// A closed stdout (| head) must cost the console, not the VM: caught,
	// SIGPIPE only turns writes into EPIPE, and children still get the
	// default disposition (an ignored signal would stay ignored across exec).
	signal.Notify(make(chan os.Signal, 1), unix.SIGPIPE)
	go func() {
		for s := range sigs {
			log.Info("signal received", zap.String("signal", s.String()))
			stop <- struct{}{}
		}
	}()
	if !plan.Persist {
		why := "PERSIST=0"
		if plan.Config.Persist == nil {
			why = "DATA_DIR is not a mount point; set PERSIST=1 to keep it"
		}
		log.Warn("the state folder is removed when the VM ends", zap.String("state", plan.Paths.State), zap.String("because", why))
	}
	reaper := supervisor.NewReaper(func(pid int, status string) {
		log.Debug("reaped orphan", zap.Int("pid", pid), zap.String("status", status))
	})
	prep, err := prepare(plan, reaper, stop, log)
	if errors.Is(err, context.Canceled) {
		log.Info("stopped before QEMU started")
		return supervisor.ExitPoweredOff
	}
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return configError(err)
		}
		log.Error("preparing the VM", zap.Error(err))
		return supervisor.ExitFault
	}
	defer prep.Release()
	for _, w := range prep.Warnings {
		log.Warn(w)
	}
	select {
	case <-stop:
		log.Info("stopped before QEMU started")
		return supervisor.ExitPoweredOff
	default:
	}

	input, restore := consoleInput(stop, log)
	defer restore()

	cfg := plan.Config
	args := qemu.Args(plan.Spec)
	log.Info("starting QEMU", zap.String("guest", cfg.GuestName), zap.String("accel", plan.Spec.Accel),
		zap.Duration("prepare", time.Since(started)), zap.Strings("args", config.RedactArgs(args)))
	return supervisor.Run(context.Background(), supervisor.Options{
		Binary:          cfg.QEMUBinary,
		Args:            args,
		ExtraFiles:      prep.Files,
		QMPSocket:       plan.Paths.QMP,
		SerialLog:       plan.Paths.SerialLog,
		SerialLogMax:    cfg.SerialLogMax,
		Console:         os.Stdout,
		Input:           input,
		StopRequests:    stop,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Reaper:          reaper,
		Log:             log,
	})
}

// escapeKey (Ctrl-]) on an interactive console asks for a graceful stop,
// as in telnet and virsh console, since Ctrl-C belongs to the guest.
const escapeKey = 0x1d

// consoleInput forwards a terminal's keystrokes to the serial console in raw
// mode; without a terminal the guest gets no input.
func consoleInput(stop chan<- struct{}, log *zap.Logger) (io.Reader, func()) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, func() {}
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		log.Warn("console stays line-buffered", zap.Error(err))
		return nil, func() {}
	}
	log.Info("serial console attached: press Ctrl-] to power the guest off")
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := os.Stdin.Read(buf)
			for _, b := range buf[:n] {
				if b == escapeKey {
					stop <- struct{}{}
					continue
				}
				_, _ = pw.Write([]byte{b})
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr, func() { _ = term.Restore(fd, old) }
}

// prepare runs start-up; a stop signal meanwhile cancels it (a download
// stops, what was made is undone) and it returns context.Canceled.
func prepare(plan *vm.Plan, reaper *supervisor.Reaper, stop <-chan struct{}, log *zap.Logger) (*vm.Prepared, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sugar := log.Sugar()
	progress := image.LogProgress(sugar.Infow, 10*time.Second, 10)
	if term.IsTerminal(int(os.Stderr.Fd())) {
		progress = image.Bar(os.Stderr, "downloading "+plan.Config.GuestName+"'s image")
	}
	type result struct {
		prep *vm.Prepared
		err  error
	}
	done := make(chan result, 1)
	go func() {
		p, err := vm.Prepare(ctx, plan, vm.Tools{Run: reaper.OutputContext, Progress: progress, Log: sugar.Infow})
		done <- result{p, err}
	}()
	select {
	case r := <-done:
		return r.prep, r.err
	case <-stop:
		cancel()
		if r := <-done; r.err == nil {
			r.prep.Release()
		}
		return nil, context.Canceled
	}
}

func listDistros(catalog string) int {
	cat, err := image.LoadCatalog(catalog)
	if err != nil {
		return configError(&config.Error{Var: "CATALOG", Value: catalog, Accepted: "a readable catalog YAML file", Err: err})
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DISTRO\tFIRMWARE\tUSER\tDESCRIPTION")
	for _, d := range cat.List() {
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\n", d.Name, d.Firmware, d.User, d.Description)
	}
	_ = tw.Flush()
	return 0
}

func probeFacts(cfg *config.Config, log *zap.Logger) vm.Facts {
	f := vm.Facts{
		VhostNet:       netcfg.VhostNetUsable(),
		HostIPv6:       netcfg.HostHasIPv6(),
		FirmwareExists: vm.FileExists,
		KeptMACs:       map[int]string{},
		NoDirectIO:     !vm.DirectIOWorks(cfg.StateDir()),
		DataDirMounted: vm.IsMountPoint(cfg.DataDir),
	}
	if cfg.Accel != config.AccelTCG {
		start := time.Now()
		f.KVMUsable, f.KVMWhy = vm.ProbeKVM(vm.KVMProbeTimeout)
		log.Debug("KVM probe", zap.Bool("usable", f.KVMUsable), zap.String("why_not", f.KVMWhy), zap.Duration("took", time.Since(start)))
	}
	mtu, err := netcfg.DefaultRouteMTU()
	if err != nil {
		log.Warn("MTU detection failed; leaving the MTU alone", zap.Error(err))
	}
	f.DefaultMTU = mtu
	if f.Links, err = netcfg.LookupLinks(vm.Uplinks(cfg)); err != nil {
		log.Warn("looking up bridges and parent NICs", zap.Error(err))
	}
	for _, n := range cfg.NICs {
		kept, err := netcfg.ReadKeptMAC(cfg.StateDir(), n.Index)
		if err != nil {
			log.Warn("reading kept MAC", zap.Int("nic", n.Index), zap.Error(err))
		}
		f.KeptMACs[n.Index] = kept
	}
	return f
}

// configError prints a configuration error; config.Error masks the
// secrets of the values it names.
func configError(err error) int {
	fmt.Fprintln(os.Stderr, "vmrunner: configuration error:")
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(os.Stderr, "  "+line)
	}
	return supervisor.ExitConfig
}

// newLogger logs JSON in containers and for machines, a console format on
// a terminal, secrets masked (see redactingEncoder). No sampling: a
// supervisor must never drop a line.
func newLogger(cfg *config.Config) *zap.Logger {
	format := cfg.LogFormat
	if format == "" {
		format = "json"
		if term.IsTerminal(int(os.Stderr.Fd())) {
			format = "console"
		}
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	enc := zapcore.NewJSONEncoder(ec)
	if format == "console" {
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	}
	level := zap.InfoLevel
	if cfg.Verbose {
		level = zap.DebugLevel
	}
	stderr := zapcore.Lock(os.Stderr)
	core := zapcore.NewCore(redactingEncoder{enc, cfg.Secrets()}, stderr, level)
	return zap.New(core, zap.ErrorOutput(stderr), zap.AddCaller(), zap.AddStacktrace(zap.ErrorLevel))
}

func versionString() string {
	s := "vmrunner " + version
	if bi, ok := debug.ReadBuildInfo(); ok {
		s += " (" + bi.GoVersion
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.revision" || kv.Key == "vcs.time" || kv.Key == "vcs.modified" {
				s += ", " + kv.Key + "=" + kv.Value
			}
		}
		s += ")"
	}
	return s
}

// shellQuote renders argv as one line a POSIX shell reads back unchanged.
func shellQuote(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+:,./@%") == "" {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
