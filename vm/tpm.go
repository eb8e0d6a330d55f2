package vm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/qemu"
)

// FindSwtpm is the swtpm start-up would run (Debian's swtpm package); ""
// when there is none. (Facts.Swtpm.)
func FindSwtpm() string {
	p, err := exec.LookPath("swtpm")
	if err != nil {
		return ""
	}
	return p
}

// TPMState is the folder of the TPM's state (its keys, NVRAM, PCR
// policy): kept with the disk, across runs and power cycles.
func (p Paths) TPMState() string { return filepath.Join(p.State, "tpm") }

// TPMSocket is where swtpm listens for QEMU.
func (p Paths) TPMSocket() string { return filepath.Join(p.State, "tpm.sock") }

// TPMPlan is the VM's TPM: swtpm, started next to each QEMU run that has
// one.
type TPMPlan struct {
	Binary string
	State  string
	Socket string
	// Always: TPM=1; otherwise (TPM=auto) only runs that boot with
	// Secure Boot have the TPM, which a boot mode switch may change.
	Always bool
}

// Args run swtpm for one QEMU: a TPM 2.0 on a control socket only QEMU's
// user may open, that ends when QEMU closes it (--terminate), its state
// files private to that user.
func (t TPMPlan) Args() []string {
	return []string{"socket", "--tpm2",
		"--tpmstate", "dir=" + t.State + ",mode=0600",
		"--ctrl", "type=unixio,path=" + t.Socket + ",mode=0600",
		"--terminate"}
}

// installSwtpm is the advice where swtpm is missing.
const installSwtpm = "apt-get install swtpm (Debian's swtpm package)"

// planTPM decides the TPM: TPM=1 needs swtpm; TPM=auto gives Secure Boot
// runs one when swtpm is there, and warns when BOOT_MODE=secure goes
// without.
func (p *Plan) planTPM(f Facts) error {
	c := p.Config
	switch c.Hardware.TPM {
	case config.TPMOff:
		return nil
	case config.TPMOn:
		if f.Swtpm == "" {
			return &config.Error{Var: "TPM", Value: "1", Accepted: "0 or auto on this host: no swtpm to emulate the TPM; " + installSwtpm}
		}
	default:
		if f.Swtpm == "" {
			if c.BootMode == config.BootSecure {
				p.Warnings = append(p.Warnings, "BOOT_MODE=secure without a TPM: swtpm is not installed ("+installSwtpm+"; TPM=0 silences this)")
			}
			return nil
		}
	}
	t := &TPMPlan{Binary: f.Swtpm, State: p.Paths.TPMState(), Socket: p.Paths.TPMSocket(), Always: c.Hardware.TPM == config.TPMOn}
	// swtpm's options are comma separated and have no escape: such a
	// DATA_DIR is refused where a TPM is asked for, and gets none where
	// only a later switch to Secure Boot would ask.
	if strings.Contains(t.State, ",") {
		if t.Always || c.BootMode == config.BootSecure {
			return &config.Error{Var: "DATA_DIR", Value: c.DataDir, Accepted: "a path without commas for the TPM's state (swtpm cannot take one), or TPM=0"}
		}
		return nil
	}
	p.TPM = t
	return nil
}

// tpmSpec is the spec's TPM for a run in boot mode mode; nil: none.
func (p *Plan) tpmSpec(mode config.BootMode) *qemu.TPM {
	if p.TPM == nil || !(p.TPM.Always || mode == config.BootSecure) {
		return nil
	}
	return &qemu.TPM{Socket: p.TPM.Socket}
}

// StartFunc starts a command and hands back its wait status once it has
// been reaped (supervisor.Reaper.Start: the reaper is the only waiter).
type StartFunc func(*exec.Cmd) (<-chan unix.WaitStatus, error)

// StartTPM starts the run's swtpm, when its spec has a TPM, before QEMU
// connects to it: as QEMU's user (cred; nil: vmrunner's own), so it is
// confined as QEMU is, and owns the TPM's state folder (0700). Like QEMU
// it dies with vmrunner (parent-death signal), stays out of vmrunner's
// process group, and it ends with the run: by itself when QEMU closes
// its socket, and killed and its socket removed at the run's release.
func (r *Run) StartTPM(start StartFunc, cred *syscall.Credential) error {
	t := r.tpm
	if r.Spec.TPM == nil || t == nil {
		return nil
	}
	uid, gid := os.Geteuid(), os.Getegid()
	if cred != nil {
		uid, gid = int(cred.Uid), int(cred.Gid)
	}
	if err := tpmFolder(t.State, uid, gid); err != nil {
		return err
	}
	if err := checkPrivate(t.Socket, true); err != nil {
		return err
	}
	if err := os.Remove(t.Socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	d, err := startDaemon(start, exec.Command(t.Binary, t.Args()...), cred, t.Socket)
	if err != nil {
		return fmt.Errorf("swtpm: %w", err)
	}
	r.c.always("swtpm", func() error {
		_ = d.proc.Kill() // already gone when QEMU closed its socket
		<-d.exited
		if err := os.Remove(t.Socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	return nil
}

// tpmFolder makes the TPM's state folder, or takes the existing one, and
// hands it and its files to uid:gid, mode 0700. It never follows a
// symlink: the folder is opened with O_NOFOLLOW, and its files, which
// swtpm (as QEMU's user) wrote, are changed with AT_SYMLINK_NOFOLLOW.
func tpmFolder(dir string, uid, gid int) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return notPrivate(dir, "is a symlink or not a folder")
		}
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("handing %s to uid %d: %w", dir, uid, err)
	}
	if err := unix.Fchmod(fd, 0o700); err != nil {
		return fmt.Errorf("making %s private: %w", dir, err)
	}
	entries, err := f.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue // swtpm makes only files; it follows nothing else as root
		}
		if err := unix.Fchownat(fd, e.Name(), uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("handing %s to uid %d: %w", filepath.Join(dir, e.Name()), uid, err)
		}
	}
	return nil
}

// startDaemon starts cmd through start as cred, from a thread that lives
// as long as it (a parent-death signal fires when the forking thread
// ends), and waits for it to make socket.
func startDaemon(start StartFunc, cmd *exec.Cmd, cred *syscall.Credential, socket string) (daemon, error) {
	cmd.Env = qemu.ChildEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true, Credential: cred}
	pr, pw, err := os.Pipe()
	if err != nil {
		return daemon{}, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	stderr := &capped{max: 4 << 10}
	read := make(chan struct{})
	go func() {
		_, _ = io.Copy(stderr, pr)
		pr.Close()
		close(read)
	}()
	started := make(chan error)
	exited := make(chan struct{})
	var waitErr error
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the daemon
		ch, err := start(cmd)
		started <- err
		if err == nil {
			if ws := <-ch; !ws.Exited() || ws.ExitStatus() != 0 {
				waitErr = fmt.Errorf("wait status %v", ws)
			}
		}
		close(exited)
	}()
	err = <-started
	pw.Close()
	if err != nil {
		<-read
		return daemon{}, err
	}
	if err := waitSocket(socket, exited, &waitErr); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		<-read
		return daemon{}, fmt.Errorf("%v: %s", err, lastLine(stderr.String()))
	}
	return daemon{proc: cmd.Process, exited: exited}, nil
}
