// Command vmrunner runs one QEMU virtual machine and supervises it: the
// contract is docs/reference.md.
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
	"syscall"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/control"
	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/image"
	"github.com/vmrunner/vmrunner/netcfg"
	"github.com/vmrunner/vmrunner/qemu"
	"github.com/vmrunner/vmrunner/supervisor"
	"github.com/vmrunner/vmrunner/vm"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `usage: vmrunner [--no-console] [--dry-run | --show-config | --cleanup | --help | --version]
       vmrunner --list-distros [--arch ARCH] [--type TYPE] [--search WORD]
       vmrunner health [--alive]
       vmrunner status [--json]
       vmrunner start | stop | kill | reset | reboot | pause | resume | nmi
       vmrunner boot disk|cd|network|default [--once]
       vmrunner boot-mode uefi|legacy|secure
       vmrunner media insert URL-OR-PATH | vmrunner media eject
       vmrunner console
       vmrunner vnc-password          (the new password on standard input)
       vmrunner exec [--timeout D] [-i] [--] COMMAND-LINE | PROGRAM ARG...
                (also: guest-exec)

Without arguments, runs one QEMU VM configured by environment variables
(see --help). The other verbs talk to that running vmrunner through
control.sock in its state folder, found from DATA_DIR and GUEST_NAME
(docs/lifecycle.md). exec runs a command in the guest through the QEMU
guest agent and exits with its status: 124 when --timeout passed, 125
when no vmrunner answers, 127 when the VM is off or no agent answers
(docs/guest.md).
`

func main() {
	// What vmrunner and its children make (state files, sockets, the
	// cache) is this user's alone.
	unix.Umask(0o077)
	os.Exit(run(os.Args[1:], os.Environ()))
}

func run(args []string, environ []string) int {
	args, environ = noConsoleFlag(args, environ)
	if len(args) > 1 && args[0] == "--list-distros" {
		return listDistros(config.EnvMap(environ), args[1:])
	}
	mode := ""
	if len(args) > 0 {
		mode = args[0]
	}
	switch mode {
	case "--cleanup":
		return cleanup(environ)
	case "--show-xml":
		fmt.Fprintln(os.Stderr, "vmrunner: --show-xml printed the seed project's libvirt domain XML; vmrunner runs QEMU without libvirt: --dry-run prints the QEMU command line")
		return supervisor.ExitConfig
	case "", "--dry-run", "--show-config":
		if len(args) > 1 {
			fmt.Fprint(os.Stderr, usage)
			return supervisor.ExitConfig
		}
	case "--help", "-h", "help":
		fmt.Print(usage + "\nEnvironment:\n")
		_ = config.WriteHelp(os.Stdout)
		return 0
	case "--version", "version":
		fmt.Println(versionString())
		return 0
	case "--list-distros":
		return listDistros(config.EnvMap(environ), nil)
	default:
		if isClientVerb(mode) {
			return client(args, config.EnvMap(environ))
		}
		fmt.Fprintf(os.Stderr, "vmrunner: unknown argument %q\n%s", mode, usage)
		return supervisor.ExitConfig
	}

	cfg, err := config.Load(config.EnvMap(environ), config.ProbeHost())
	if err != nil {
		return configError(err)
	}
	if mode == "--show-config" {
		if err := vm.CheckDistro(cfg); err != nil {
			return configError(err)
		}
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
		spec, warnings, err := plan.DryRunSpec()
		if err != nil {
			return configError(err)
		}
		for _, w := range warnings {
			log.Warn(w)
		}
		fmt.Println(shellQuote(append([]string{plan.QEMUBinary}, qemu.Args(spec)...)))
		return 0
	}
	return supervise(plan, log)
}

// noConsoleFlag takes the seed project's --no-console out of args, as
// NO_CONSOLE=1, wherever it stands.
func noConsoleFlag(args, environ []string) ([]string, []string) {
	var rest []string
	for _, a := range args {
		if a == "--no-console" {
			environ = append(environ, "NO_CONSOLE=1")
			continue
		}
		rest = append(rest, a)
	}
	return rest, environ
}

// cleanup removes the state folder of DATA_DIR and GUEST_NAME's VM: 0 when
// removed or absent, 1 while the VM runs or on a failure, 2 for a bad
// configuration.
func cleanup(environ []string) int {
	cfg, err := config.LoadState(config.EnvMap(environ), config.ProbeHost())
	if err != nil {
		return configError(err)
	}
	paths := vm.PathsFor(cfg)
	removed, err := vm.Cleanup(paths)
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "vmrunner --cleanup:", err)
		return supervisor.ExitFault
	case removed:
		fmt.Fprintln(os.Stderr, "vmrunner: removed", paths.State)
	default:
		fmt.Fprintln(os.Stderr, "vmrunner: nothing to remove at", paths.State)
	}
	return 0
}

func supervise(plan *vm.Plan, log *zap.Logger) int {
	// Signals are caught before start-up so a stop during it still undoes
	// what was made (links, fresh files) instead of killing us half-way.
	stop := make(chan struct{}, 2)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)
	if !signal.Ignored(unix.SIGHUP) { // under nohup a hangup must not stop the VM
		signal.Notify(sigs, unix.SIGHUP)
	}
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
	release := prep.Release
	defer func() {
		if err := release(); err != nil {
			log.Warn("releasing the state folder", zap.Error(err))
		}
	}()
	for _, w := range prep.Warnings {
		log.Warn(w)
	}
	select {
	case <-stop:
		log.Info("stopped before QEMU started")
		return supervisor.ExitPoweredOff
	default:
	}

	cfg := plan.Config
	// NO_CONSOLE: the serial console is still logged and served to
	// `vmrunner console`, but not mirrored to stdout nor fed from stdin.
	var console io.Writer = os.Stdout
	if cfg.Hardware.NoConsole {
		console = io.Discard
	}
	if !cfg.Sandbox {
		log.Warn("SANDBOX=0: QEMU runs without its seccomp sandbox; a guest that takes QEMU over may exec programs and use every system call")
	}
	ctl := controller.New(controller.Options{
		Plan:           plan,
		Prepared:       prep,
		Reaper:         reaper,
		Log:            log,
		Console:        console,
		KeepAlive:      cfg.KeepAlive,
		PowerOnAtStart: cfg.PowerOnAtStart,
		Confine: func(spec qemu.Spec, base string) (*syscall.Credential, string, error) {
			u, err := confineQEMU(plan, spec, base, log)
			qemuUser.Store(u)
			return u.Credential(), u.String(), err
		},
		FetchMedia: func(ctx context.Context, url string) (string, error) {
			sugar := log.Sugar()
			// AllowHTTP: the medium's user is authenticated (Redfish, control
			// socket) and it is only attached as a read-only raw CD. Three
			// attempts: a BMC client waits for the answer (about 3 s to
			// give up on an unreachable URL, not half a minute).
			p, err := image.Fetch(ctx, image.FetchRequest{URL: url, CacheDir: cfg.CacheDir(), AllowHTTP: true, Attempts: 3,
				MaxSize: cfg.MediaMaxSize, MaxUnpacked: cfg.MediaMaxUnpacked,
				Progress: image.LogProgress(sugar.Infow, 10*time.Second, 10), Log: sugar.Infow})
			if err != nil {
				return "", err
			}
			return p, openMedium(cfg.CacheDir(), p)
		},
	})
	srv, err := control.Listen(plan.Paths.Control, ctl, log)
	if err != nil {
		log.Error("control socket", zap.Error(err))
		return supervisor.ExitFault
	}
	go srv.Serve()
	defer srv.Close()
	stopRedfish, err := serveRedfish(plan, ctl, log)
	if err != nil {
		log.Error("redfish", zap.Error(err))
		return supervisor.ExitFault
	}
	defer stopRedfish()
	stopIPMI, err := serveIPMI(plan, ctl, log)
	if err != nil {
		log.Error("ipmi", zap.Error(err))
		return supervisor.ExitFault
	}
	defer stopIPMI()
	go func() {
		for range stop {
			ctl.Shutdown()
		}
	}()
	defer startDisplay(plan, prep, ctl, log)()
	if !cfg.Hardware.NoConsole {
		restore := consoleInput(ctl, log)
		defer restore()
	}
	code := ctl.Run(context.Background())
	if !ctl.Started() && ctl.StartError() != nil {
		release = prep.Undo
	}
	if code == supervisor.ExitConfig {
		// As before the controller: the user reads what to fix on stderr.
		return configError(ctl.StartError())
	}
	return code
}

// confineQEMU picks QEMU's user (QEMU_USER) and hands it the VM's files;
// it logs loudly what stays unconfined.
// It runs at each power-on: the run's files (seed, UEFI variables, CD
// medium) may be new.
func confineQEMU(plan *vm.Plan, spec qemu.Spec, base string, log *zap.Logger) (*supervisor.QEMUUser, error) {
	cfg := plan.Config
	own, read, write := plan.QEMUFiles(spec, base)
	files := supervisor.QEMUFiles{State: plan.Paths.State, Own: own, Read: read, Write: write,
		Root: plan.QEMURoot(spec), Devices: plan.QEMUDevices(spec)}
	u, warning, err := supervisor.Confine(cfg.QEMUUser, files)
	if err != nil {
		return nil, &config.Error{Var: "QEMU_USER", Value: cfg.QEMUUser,
			Accepted: "a user that exists and can reach every file QEMU opens, or root", Err: err}
	}
	if warning != "" {
		log.Warn(warning)
	}
	if u != nil {
		if err := u.Grant(files); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// escapeKey (Ctrl-]) on an interactive console asks for a graceful stop,
// as in telnet and virsh console, since Ctrl-C belongs to the guest.
const escapeKey = 0x1d

// consoleInput forwards a terminal's keystrokes to the serial console in
// raw mode; without a terminal the guest gets no input from stdin.
func consoleInput(ctl *controller.Controller, log *zap.Logger) func() {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return func() {}
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		log.Warn("console stays line-buffered", zap.Error(err))
		return func() {}
	}
	log.Info("serial console attached: press Ctrl-] to power the guest off")
	in := ctl.SerialInput()
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := os.Stdin.Read(buf)
			for _, b := range buf[:n] {
				if b == escapeKey {
					ctl.Shutdown()
					continue
				}
				_, _ = in.Write([]byte{b})
			}
			if err != nil {
				return
			}
		}
	}()
	return func() { _ = term.Restore(fd, old) }
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
			if err := r.prep.Release(); err != nil {
				log.Warn("releasing the state folder", zap.Error(err))
			}
		}
		return nil, context.Canceled
	}
}

// listDistros prints the catalog, filtered by the seed project's --arch,
// --type and --search flags.
func listDistros(environ map[string]string, flags []string) int {
	var f image.Filter
	for i := 0; i < len(flags); i += 2 {
		if i+1 >= len(flags) {
			fmt.Fprintf(os.Stderr, "vmrunner: %s needs a value\n%s", flags[i], usage)
			return supervisor.ExitConfig
		}
		switch v := flags[i+1]; flags[i] {
		case "--arch":
			f.Arch = v
		case "--type":
			f.Type = v
		case "--search":
			f.Search = v
		default:
			fmt.Fprintf(os.Stderr, "vmrunner: unknown argument %q\n%s", flags[i], usage)
			return supervisor.ExitConfig
		}
	}
	catalog, j, err := config.LoadCatalogs(environ, config.ProbeHost())
	if err != nil {
		return configError(err)
	}
	cat, err := image.OpenCatalog(context.Background(), image.CatalogSource{File: catalog, JSONURL: j.URL, JSONCache: j.Cache, Offline: j.Offline,
		Log: func(msg string, kv ...any) { fmt.Fprintln(os.Stderr, append([]any{"vmrunner:", msg}, kv...)...) }})
	if je := (*image.JSONCatalogError)(nil); errors.As(err, &je) && j.Offline {
		return configError(&config.Error{Var: "CATALOG_OFFLINE", Value: "1", Accepted: "0, or 1 with a JSON catalog kept at CATALOG_CACHE by an earlier start", Err: err})
	} else if je != nil {
		return configError(&config.Error{Var: "CATALOG_URL", Value: j.URL, Accepted: "a JSON catalog in the seed project's format, over https or in a local file (or CATALOG_OFFLINE=1 with a kept copy)", Err: err})
	}
	if err != nil {
		return configError(&config.Error{Var: "CATALOG", Value: catalog, Accepted: "a readable catalog YAML file", Err: err})
	}
	distros, err := cat.Select(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmrunner:", err)
		return supervisor.ExitConfig
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DISTRO\tARCH\tALIASES\tFIRMWARE\tUSER\tDESCRIPTION")
	for _, d := range distros {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", d.Name, d.Arch, strings.Join(d.Aliases, ","), d.Firmware, d.User, d.Description)
	}
	_ = tw.Flush()
	return 0
}

func probeFacts(cfg *config.Config, log *zap.Logger) vm.Facts {
	f := vm.Facts{
		HostIPv6:       netcfg.HostHasIPv6(),
		FirmwareExists: vm.FileExists,
		KeptMACs:       map[int]string{},
		NoDirectIO:     !vm.DirectIOWorks(cfg.StateDir()),
		DataDirMounted: vm.IsMountPoint(cfg.DataDir),
		Virtiofsd:      vm.FindVirtiofsd(),
		HostArch:       config.HostArch(),
		Swtpm:          vm.FindSwtpm(),
	}
	if cfg.Hardware.GPU != "" {
		f.VirglMissing = vm.VirglModuleMissing()
		if cfg.Hardware.RenderNode == "" {
			f.RenderNodes = vm.FindRenderNodes()
		}
	}
	f.Catalog, f.CatalogErr = vm.ReadCatalog(context.Background(), cfg, log.Sugar().Infow)
	f.BootImage, f.BootImageErr = vm.InspectBootImage(cfg)
	vhostErr, vhostOnHost := netcfg.ProbeVhostNet()
	f.VhostNet, f.VhostAdvice = vhostErr == nil, netcfg.VhostAdvice(vhostErr, vhostOnHost)
	if cfg.Accel != config.AccelTCG && (cfg.Arch == "" || cfg.Arch == f.HostArch) { // KVM runs only the host's architecture
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
