package vm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vmrunner/vmrunner/cloudinit"
	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/qemu"
	"golang.org/x/sys/unix"
)

// virtiofsdPaths are where Debian's QEMU packages put virtiofsd (7.2: the
// C daemon in qemu-system-common; later Debian releases ship the Rust one
// in its own package at the second path).
var virtiofsdPaths = []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"}

// FindVirtiofsd is the virtiofsd start-up would run; "" when there is none.
// (Facts.Virtiofsd.)
func FindVirtiofsd() string {
	for _, p := range virtiofsdPaths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// VirtiofsSocket is where share n's virtiofsd listens.
func (p Paths) VirtiofsSocket(n int) string {
	return filepath.Join(p.State, fmt.Sprintf("virtiofs-%d.sock", n))
}

// securityModels maps FILESYSTEM_ACCESSMODE to 9p's security_model.
var securityModels = map[string]string{
	config.AccessPassthrough: "passthrough",
	config.AccessMapped:      "mapped-xattr",
	config.AccessSquash:      "none",
}

// planShares decides each shared folder's driver: virtiofs needs a
// virtiofsd on the host; without one a default virtiofs share becomes 9p
// with a warning, and an explicit one is refused with advice.
func (p *Plan) planShares(s *qemu.Spec, f Facts) error {
	for _, sh := range p.Config.Shares {
		q := qemu.Share{ID: fmt.Sprintf("fs%d", sh.Index), Tag: sh.Tag()}
		driver := sh.Driver
		if driver == config.ShareVirtiofs && f.Virtiofsd == "" {
			if sh.DriverSet {
				return &config.Error{Var: sh.Prefix() + "DRIVER", Value: string(sh.Driver),
					Accepted: "9p on this host: no virtiofsd found at " + fmt.Sprint(virtiofsdPaths) + " (install qemu-system-common, or the virtiofsd package)"}
			}
			p.Warnings = append(p.Warnings, fmt.Sprintf("%sSOURCE=%s: no virtiofsd on this host; shared over 9p instead", sh.Prefix(), sh.Source))
			driver = config.Share9p
		}
		if driver == config.ShareVirtiofs {
			q.Virtiofs, q.Socket = true, p.Paths.VirtiofsSocket(sh.Index)
			if len(q.Socket) > maxSocketPath {
				return &config.Error{Var: "DATA_DIR", Value: p.Config.DataDir,
					Accepted: fmt.Sprintf("a path short enough for unix sockets (%s is over %d bytes)", q.Socket, maxSocketPath)}
			}
			p.Virtiofsd = append(p.Virtiofsd, VirtiofsdPlan{Binary: f.Virtiofsd, Source: sh.Source, Socket: q.Socket, ReadOnly: sh.ReadOnly})
		} else {
			q.Path, q.SecurityModel, q.ReadOnly = sh.Source, securityModels[sh.AccessMode], sh.ReadOnly
		}
		s.Shares = append(s.Shares, q)
		p.Mounts = append(p.Mounts, cloudinit.Mount{Tag: q.Tag, Target: sh.Target, Virtiofs: q.Virtiofs, ReadOnly: sh.ReadOnly})
	}
	return nil
}

// QEMURoot says why QEMU must keep running as root, "" when it need not:
// a read-write 9p passthrough share stores the guest's owners as the
// host's, so QEMU chowns every file the guest makes, which only root may
// (as another user, every create in the guest fails).
func (p *Plan) QEMURoot(s qemu.Spec) string {
	for _, sh := range s.Shares {
		if sh.SecurityModel == "passthrough" && !sh.ReadOnly {
			return "the shared folder " + sh.Path + " is served over 9p with ACCESSMODE=passthrough, which chowns files as the guest asks"
		}
	}
	return ""
}

// VirtiofsdPlan is one virtiofsd to run next to QEMU.
type VirtiofsdPlan struct {
	Binary, Source, Socket string
	// ReadOnly: virtiofsd 7.2 has no read-only mode, so it is started in
	// a mount namespace of its own where Source is mounted read-only: the
	// host kernel refuses every write, whatever the guest mounts.
	ReadOnly bool
}

// Args confine the daemon to its folder: sandbox namespace pivots into it
// (mount, PID and network namespaces of its own), chroot where namespaces
// cannot be made (an unprivileged container); virtiofsd 7.2 always applies
// its seccomp filter.
func (v VirtiofsdPlan) Args(sandbox string) []string {
	return []string{"--socket-path=" + v.Socket, "-o", "source=" + v.Source, "-o", "sandbox=" + sandbox, "-o", "cache=auto"}
}

// virtiofsdWait is how long a virtiofsd gets to create its socket.
const virtiofsdWait = 10 * time.Second

// virtiofsds starts one virtiofsd per virtiofs share before QEMU, which
// connects to their sockets at start-up. A virtiofsd serves one QEMU
// connection, so this is a per-run step: the run's release kills them and
// removes their sockets; each also exits by itself when QEMU goes.
func (p *Plan) virtiofsds(out *Run) error {
	var procs []daemon
	stop := func() error {
		for _, d := range procs {
			d.proc.Kill()
			<-d.exited
		}
		var errs []error
		for _, v := range p.Virtiofsd {
			if err := os.Remove(v.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	for _, v := range p.Virtiofsd {
		d, sandbox, err := startVirtiofsd(v)
		if err != nil {
			stop()
			return err
		}
		if sandbox != "namespace" {
			out.Warnings = append(out.Warnings, "virtiofsd for "+v.Source+": no namespaces here; confined with chroot instead")
		}
		procs = append(procs, d)
	}
	if len(procs) > 0 {
		out.c.always("virtiofsd", stop)
	}
	return nil
}

type daemon struct {
	proc   *os.Process
	exited <-chan struct{} // closed once it has been waited for
}

// startVirtiofsd runs v sandboxed in namespaces, else in a chroot, and
// waits for its socket.
func startVirtiofsd(v VirtiofsdPlan) (daemon, string, error) {
	var errs []error
	for _, sandbox := range []string{"namespace", "chroot"} {
		os.Remove(v.Socket)
		cmd := exec.Command(v.Binary, v.Args(sandbox)...)
		// Like QEMU: gone when vmrunner is, and out of reach of signals
		// sent to vmrunner's process group.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		stderr := &capped{max: 4 << 10} // read only once it has exited
		cmd.Stderr = stderr
		started := make(chan error)
		exited := make(chan struct{})
		var waitErr error
		// Pdeathsig fires when the forking thread exits: the goroutine
		// holds its thread until the daemon has ended.
		go func() {
			// Never unlocked: the thread ends with the goroutine, so its
			// mount namespace is never reused.
			runtime.LockOSThread()
			var err error
			if v.ReadOnly {
				err = readOnlyView(v.Source)
			}
			if err == nil {
				err = cmd.Start()
			}
			started <- err
			if err == nil {
				waitErr = cmd.Wait()
			}
			close(exited)
		}()
		if err := <-started; err != nil {
			return daemon{}, "", fmt.Errorf("virtiofsd for %s: %w", v.Source, err)
		}
		if err := waitSocket(v.Socket, exited, &waitErr); err != nil {
			cmd.Process.Kill()
			<-exited
			errs = append(errs, fmt.Errorf("sandbox=%s: %v: %s", sandbox, err, lastLine(stderr.String())))
			continue
		}
		// Its later output is not read: a bounded buffer would be needed.
		return daemon{proc: cmd.Process, exited: exited}, sandbox, nil
	}
	return daemon{}, "", fmt.Errorf("virtiofsd for %s did not start (FILESYSTEM_DRIVER=9p needs no helper): %w", v.Source, errors.Join(errs...))
}

// readOnlyView moves the calling (locked) thread into a new mount
// namespace, where source and every mount below it are read-only; a child
// started from this thread inherits that view. The host's mounts are not
// touched (the namespace's mounts are private).
func readOnlyView(source string) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("a read-only share needs a mount namespace (root or CAP_SYS_ADMIN; FILESYSTEM_DRIVER=9p enforces read-only without): %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making the mounts private: %w", err)
	}
	if err := unix.Mount(source, source, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("binding %s: %w", source, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(-1, source, unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("making %s read-only (mount_setattr, Linux 5.12): %w", source, err)
	}
	return nil
}

// capped keeps the first max bytes written to it.
type capped struct {
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capped) String() string { return c.buf.String() }

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// waitSocket waits for path to be a socket; waitErr is valid once exited
// is closed.
func waitSocket(path string, exited <-chan struct{}, waitErr *error) error {
	deadline := time.After(virtiofsdWait)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Type() == os.ModeSocket {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited: %v", *waitErr)
		case <-deadline:
			return fmt.Errorf("no socket %s within %s", path, virtiofsdWait)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
