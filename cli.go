package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/control"
	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/guestagent"
	"github.com/vmrunner/vmrunner/supervisor"
	"github.com/vmrunner/vmrunner/vm"
)

// simpleVerbs are the verbs that are one request without arguments.
var simpleVerbs = map[string]control.Request{
	"start":  {Op: control.OpPowerOn},
	"stop":   {Op: control.OpPowerOff, Graceful: true},
	"kill":   {Op: control.OpPowerOff},
	"reset":  {Op: control.OpReset},
	"reboot": {Op: control.OpReboot},
	"pause":  {Op: control.OpPause},
	"resume": {Op: control.OpResume},
	"nmi":    {Op: control.OpNMI},
}

func isClientVerb(v string) bool {
	_, simple := simpleVerbs[v]
	switch v {
	case "health", "status", "boot", "boot-mode", "media", "console", "vnc-password", "exec", "guest-exec":
		return true
	}
	return simple
}

// client runs a verb against the running vmrunner of DATA_DIR/GUEST_NAME.
// It reads only those two variables: a client must not fail because some
// other setting (a file it names, say) changed since the VM started.
func client(args []string, env map[string]string) int {
	verb, rest := args[0], args[1:]
	req, ok := simpleVerbs[verb]
	usageErr := func() int {
		fmt.Fprintf(os.Stderr, "vmrunner %s: bad arguments %q\n%s", verb, rest, usage)
		return supervisor.ExitConfig
	}
	if verb == "exec" || verb == "guest-exec" {
		x, stdin, err := parseExec(rest)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmrunner %s: %v\n%s", verb, err, usage)
			return supervisor.ExitConfig
		}
		return guestExec(verb, x, stdin, env)
	}
	asJSON, alive, once := false, false, false
	var words []string
	for _, a := range rest {
		switch {
		case a == "--json" && verb == "status":
			asJSON = true
		case a == "--alive" && verb == "health":
			alive = true
		case a == "--once" && verb == "boot":
			once = true
		case strings.HasPrefix(a, "--"):
			return usageErr()
		default:
			words = append(words, a)
		}
	}
	switch {
	case ok, verb == "status", verb == "health", verb == "console":
		if len(words) != 0 {
			return usageErr()
		}
	case verb == "vnc-password":
		// From stdin only: an argument would show in ps and shell history.
		if len(words) != 0 {
			return usageErr()
		}
		pw, err := readPassword(os.Stdin)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmrunner vnc-password: %v\n", err)
			return supervisor.ExitConfig
		}
		req = control.Request{Op: control.OpSetDisplayPassword, Password: pw}
	case verb == "boot":
		if len(words) != 1 {
			return usageErr()
		}
		dev := controller.BootDevice(words[0])
		if words[0] == "default" {
			dev = controller.BootDefault
		}
		req = control.Request{Op: control.OpSetBoot, Boot: &controller.BootOverride{Device: dev, Once: once}}
	case verb == "boot-mode":
		if len(words) != 1 {
			return usageErr()
		}
		req = control.Request{Op: control.OpSetBootMode, BootMode: config.BootMode(words[0])}
	case verb == "media":
		switch {
		case len(words) == 2 && words[0] == "insert":
			req = control.Request{Op: control.OpInsertMedia, Source: words[1]}
		case len(words) == 1 && words[0] == "eject":
			req = control.Request{Op: control.OpEjectMedia}
		default:
			return usageErr()
		}
	}

	cl, code := dialVM(env, verb, 1)
	if cl == nil {
		return code
	}
	defer cl.Close()

	switch verb {
	case "console":
		return console(cl)
	case "status", "health":
		req = control.Request{Op: control.OpStatus}
	}
	resp, err := cl.Call(req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmrunner %s: %v\n", verb, err)
		return 1
	}
	switch verb {
	case "health":
		if alive {
			return 0
		}
		if resp.Status.Power != controller.Running {
			fmt.Fprintf(os.Stderr, "vmrunner health: the VM is %s\n", resp.Status.Power)
			return 1
		}
	case "status":
		if asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(resp.Status)
			return 0
		}
		printStatus(os.Stdout, resp.Status)
	}
	return 0
}

// readPassword reads the first line of r (a terminal gets a prompt and
// no echo), without its line end.
func readPassword(f *os.File) (string, error) {
	if fd := int(f.Fd()); term.IsTerminal(fd) {
		fmt.Fprint(os.Stderr, "new VNC password (at most 8 characters): ")
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		return string(b), err
	}
	line, err := bufio.NewReader(io.LimitReader(f, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on standard input (echo -n NEW | vmrunner vnc-password)")
	}
	return line, nil
}

// Exit statuses of vmrunner exec besides the command's own.
const (
	execTimedOut = 124 // --timeout passed; the command was sent SIGTERM
	execNoVM     = 125 // no vmrunner answers, or it failed
	execNoAgent  = 127 // the VM is off or no guest agent answers
)

// parseExec reads exec's arguments: options, then the command. One word
// is a shell command line (/bin/sh -c); several run as a program and its
// arguments. stdin says whether standard input is sent (-i).
func parseExec(args []string) (x control.Exec, stdin bool, err error) {
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			i++
		case a == "-i" || a == "--interactive":
			stdin = true
			continue
		case a == "--timeout" || strings.HasPrefix(a, "--timeout="):
			v, found := strings.CutPrefix(a, "--timeout=")
			if !found {
				if i+1 == len(args) {
					return x, false, errors.New("--timeout needs a duration")
				}
				i++
				v = args[i]
			}
			d, perr := time.ParseDuration(v)
			if perr != nil || d <= 0 {
				return x, false, fmt.Errorf("--timeout %q: accepted: a positive duration such as 30s or 5m", v)
			}
			x.TimeoutMS = d.Milliseconds()
			continue
		case strings.HasPrefix(a, "-"):
			return x, false, fmt.Errorf("unknown option %q", a)
		}
		break
	}
	words := args[i:]
	switch {
	case len(words) == 0 || words[0] == "":
		return x, false, errors.New("no command given")
	case len(words) == 1:
		x.Path, x.Args = "/bin/sh", []string{"-c", words[0]}
	default:
		x.Path, x.Args = words[0], words[1:]
	}
	return x, stdin, nil
}

// guestExec runs a command in the guest through the running vmrunner and
// returns its exit status.
func guestExec(verb string, x control.Exec, withStdin bool, env map[string]string) int {
	if withStdin {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, guestagent.MaxStdin+1))
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmrunner %s: reading standard input: %v\n", verb, err)
			return execNoVM
		}
		if len(b) > guestagent.MaxStdin {
			fmt.Fprintf(os.Stderr, "vmrunner %s: standard input is over %d bytes\n", verb, guestagent.MaxStdin)
			return supervisor.ExitConfig
		}
		x.Stdin = b
	}
	cl, code := dialVM(env, verb, execNoVM)
	if cl == nil {
		return code
	}
	defer cl.Close()
	code, err := cl.Exec(x, os.Stdout, os.Stderr)
	switch {
	case err == nil:
		return code
	case errors.Is(err, guestagent.ErrNoAgent), errors.Is(err, guestagent.ErrNoChannel), errors.Is(err, controller.ErrState):
		fmt.Fprintf(os.Stderr, "vmrunner %s: the command did not run: %v\n", verb, err)
		return execNoAgent
	case errors.Is(err, control.ErrTimeout):
		fmt.Fprintf(os.Stderr, "vmrunner %s: %v\n", verb, err)
		return execTimedOut
	}
	fmt.Fprintf(os.Stderr, "vmrunner %s: %v\n", verb, err)
	return execNoVM
}

func printStatus(w io.Writer, s *controller.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name\t%s\n", s.Name)
	fmt.Fprintf(tw, "uuid\t%s\n", s.UUID)
	power := string(s.Power)
	if !s.StartedAt.IsZero() {
		power += fmt.Sprintf(" (up %s, QEMU pid %d)", time.Since(s.StartedAt).Round(time.Second), s.PID)
	}
	fmt.Fprintf(tw, "power\t%s\n", power)
	if s.LastExit != "" {
		fmt.Fprintf(tw, "last exit\t%s\n", s.LastExit)
	}
	fmt.Fprintf(tw, "machine\t%d vCPUs, %d MiB, %s, %s\n", s.CPUs, s.MemoryMiB, s.Accel, s.BootMode)
	boot := string(s.Boot.Device)
	if boot == "" {
		boot = "default"
	}
	if s.Boot.Once {
		boot += " (once)"
	}
	fmt.Fprintf(tw, "boot\t%s\n", boot)
	media := s.Media.Source
	if media == "" {
		media = "(empty)"
	}
	fmt.Fprintf(tw, "cd\t%s\n", media)
	for _, n := range s.NICs {
		fmt.Fprintf(tw, "nic %d\t%s %s %s\n", n.Index, n.Mode, n.MAC, strings.Join(n.Forwards, ", "))
	}
	if g := s.Guest; g != nil {
		fmt.Fprintf(tw, "guest\t%s, %s (%s), agent seen %s ago\n", g.HostName, g.OS, g.Kernel, time.Since(g.Updated).Round(time.Second))
		for _, a := range g.Addresses {
			fmt.Fprintf(tw, "guest address\t%s\n", a)
		}
	}
	_ = tw.Flush()
}

// console attaches this terminal to the guest's serial console until
// Ctrl-] (or the end of standard input, or of the VM's controller).
func console(cl *control.Client) int {
	conn, err := cl.Console()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmrunner console:", err)
		return 1
	}
	defer conn.Close()
	fd := int(os.Stdin.Fd())
	if term.IsTerminal(fd) {
		if old, err := term.MakeRaw(fd); err == nil {
			defer func() { _ = term.Restore(fd, old) }()
		}
		fmt.Fprint(os.Stderr, "vmrunner: console attached; Ctrl-] detaches\r\n")
	}
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(os.Stdout, conn)
		done <- struct{}{}
	}()
	go func() {
		_ = copyUntilEscape(conn, os.Stdin)
		done <- struct{}{}
	}()
	<-done
	return 0
}

var errEscape = errors.New("escape key")

// copyUntilEscape copies keystrokes until Ctrl-] or the end of r.
func copyUntilEscape(w io.Writer, r io.Reader) error {
	buf := make([]byte, 256)
	for {
		n, err := r.Read(buf)
		chunk := buf[:n]
		if i := strings.IndexByte(string(chunk), escapeKey); i >= 0 {
			_, _ = w.Write(chunk[:i])
			return errEscape
		}
		if _, werr := w.Write(chunk); werr != nil {
			return werr
		}
		if err != nil {
			return err
		}
	}
}

// dialVM connects to the control socket of the VM env names. On failure it
// has said why and returns nil with the exit code: configuration errors'
// own, or noVM when no vmrunner answers.
func dialVM(env map[string]string, verb string, noVM int) (*control.Client, int) {
	cfg, err := config.LoadState(env, config.ProbeHost())
	if err != nil {
		return nil, configError(err)
	}
	state := cfg.StateDir()
	cl, err := control.Dial(vm.ControlSocket(state), 5*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmrunner %s: no vmrunner answers for %s: %v\n", verb, state, err)
		return nil, noVM
	}
	return cl, 0
}
