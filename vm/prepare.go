package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmrunner/vmrunner/cloudinit"
	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/image"
	"github.com/vmrunner/vmrunner/netcfg"
)

// RunFunc runs a helper command to completion, killing it if ctx ends
// first (the supervisor's reaper owns every child, so commands go through
// it).
type RunFunc func(context.Context, *exec.Cmd) ([]byte, error)

// Tools are what start-up steps use to act and report.
type Tools struct {
	Run      RunFunc
	Progress func(done, total int64)                // download progress
	Log      func(msg string, keysAndValues ...any) // download events
}

// Prepared is what start-up created and the run needs.
type Prepared struct {
	Files    []*os.File // inherited by QEMU as fds 3, 4, …
	Warnings []string
	undo     []func()
}

// Release undoes start-up in reverse order: network links, then the lock.
// It is safe to call once the VM has ended.
func (p *Prepared) Release() {
	for i := len(p.undo) - 1; i >= 0; i-- {
		p.undo[i]()
	}
	p.undo = nil
}

// step is one named start-up action. It returns how to undo itself; keep
// is what stays undone-able after a successful start (the lock, the links)
// while the rest is only rolled back on failure.
type step struct {
	name string
	do   func(*Prepared) (undo func(), keep bool, err error)
}

// Prepare creates the state folder's files and the host network devices,
// in order. When a step fails, every earlier step is undone, so a failed
// start leaves nothing half-made behind.
// ctx cancels a download in progress.
func Prepare(ctx context.Context, p *Plan, t Tools) (*Prepared, error) {
	out := &Prepared{}
	var rollback []func()
	steps := []step{
		// The base image comes first: a wrong URL must leave no state.
		{"base image", func(*Prepared) (func(), bool, error) { return nil, false, p.baseImage(ctx, t) }},
		{"state folder", p.stateFolder},
		{"lock", p.lock},
		{"removal at the end", p.removeAtEnd},
		{"stale sockets", p.staleSockets},
		{"MAC addresses", p.macs},
		{"disks", func(*Prepared) (func(), bool, error) { return p.disks(ctx, t.Run) }},
		{"UEFI variables", p.uefiVars},
		{"cloud-init seed", p.seed},
		{"network", p.network},
		{"virtiofsd", p.virtiofsds},
	}
	for _, s := range steps {
		undo, keep, err := s.do(out)
		if err != nil {
			for i := len(rollback) - 1; i >= 0; i-- {
				rollback[i]()
			}
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if undo == nil {
			continue
		}
		rollback = append(rollback, undo)
		if keep {
			out.undo = append(out.undo, undo)
		}
	}
	out.Warnings = append(out.Warnings, p.Warnings...)
	return out, nil
}

// stateFolder makes the state folder private to this user (0700) and
// refuses one where a file vmrunner would open is a symlink or another
// user's, before anything is written there.
func (p *Plan) stateFolder(*Prepared) (func(), bool, error) {
	dir := p.Paths.State
	if _, err := privateDir(filepath.Dir(dir)); err != nil {
		return nil, false, err
	}
	made, err := privateDir(dir)
	if err != nil {
		return nil, false, err
	}
	if err := p.checkStateFiles(); err != nil {
		return nil, false, err
	}
	if !made {
		return nil, false, nil
	}
	return func() { os.RemoveAll(dir) }, false, nil
}

// checkStateFiles checks every path vmrunner or QEMU opens in the state
// folder (see checkPrivate).
func (p *Plan) checkStateFiles() error {
	ps := p.Paths
	files := []string{ps.Disk, ps.Seed, ps.Vars, ps.Vars + ".tmp", ps.SerialLog, ps.Lock, ps.Salt,
		p.statePath(guestPasswordFile), p.statePath(ephemeralMarker)}
	for n := 2; n <= config.MaxDisks; n++ {
		files = append(files, ps.ExtraDisk(n))
	}
	for i := 1; i <= config.MaxNICs; i++ {
		files = append(files, netcfg.MACFile(ps.State, i))
	}
	var errs []error
	for _, f := range files {
		errs = append(errs, checkPrivate(f, false))
	}
	for _, s := range []string{ps.QMP, ps.QMPProbe} {
		errs = append(errs, checkPrivate(s, true))
	}
	return errors.Join(errs...)
}

func (p *Plan) statePath(name string) string { return filepath.Join(p.Paths.State, name) }

// lock takes the state folder's lock. Holding it, a PERSIST=0 run's marker
// means that run was killed before it could remove the folder: what it
// left is removed now rather than reused.
func (p *Plan) lock(out *Prepared) (func(), bool, error) {
	f, err := openPrivate(p.Paths.Lock, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return nil, false, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("another vmrunner is running the VM in %s: %w", p.Paths.State, err)
	}
	if _, err := os.Lstat(p.statePath(ephemeralMarker)); err == nil {
		if err := p.wipeState(); err != nil {
			f.Close()
			return nil, false, err
		}
		out.Warnings = append(out.Warnings, fmt.Sprintf("removed what a killed PERSIST=0 run of this VM left in %s; starting afresh", p.Paths.State))
	}
	return func() { f.Close() }, true, nil
}

// wipeState empties the state folder but for the lock, which is held.
func (p *Plan) wipeState() error {
	entries, err := os.ReadDir(p.Paths.State)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == filepath.Base(p.Paths.Lock) {
			continue
		}
		if err := os.RemoveAll(p.statePath(e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// staleSockets removes sockets a killed run left, so that QMP clients never
// reach a dead QEMU's path.
func (p *Plan) staleSockets(*Prepared) (func(), bool, error) {
	for _, s := range []string{p.Paths.QMP, p.Paths.QMPProbe, p.Paths.QGA} {
		if err := os.Remove(s); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, false, err
		}
	}
	return func() {
		os.Remove(p.Paths.QMP)
		os.Remove(p.Paths.QMPProbe)
		os.Remove(p.Paths.QGA)
	}, true, nil
}

func (p *Plan) macs(*Prepared) (func(), bool, error) {
	for _, n := range p.NICs {
		if err := netcfg.KeepMAC(p.Paths.State, n.Index, n.MAC); err != nil {
			return nil, false, err
		}
	}
	return nil, false, nil
}

// removeAtEnd makes the state folder go with the VM when PERSIST is off.
// It runs before the lock is let go, so that a next vmrunner of the same
// VM never sees a folder half removed. A marker says so meanwhile, for the
// next start after a kill (see lock).
func (p *Plan) removeAtEnd(*Prepared) (func(), bool, error) {
	if p.Persist {
		return nil, false, nil
	}
	if err := writePrivate(p.statePath(ephemeralMarker), []byte("PERSIST=0: this folder is removed when its VM ends\n")); err != nil {
		return nil, false, err
	}
	return func() { os.RemoveAll(p.Paths.State) }, true, nil
}

// disks makes or grows the VM's disk and the extra ones; a failure removes
// the disks this step made.
func (p *Plan) disks(ctx context.Context, run RunFunc) (func(), bool, error) {
	var made []string
	undo := func() {
		for _, f := range made {
			os.Remove(f)
		}
	}
	ensure := func(sizeVar, path, basePath string, size int64) error {
		created, err := p.ensureDisk(ctx, run, sizeVar, path, basePath, size)
		if created {
			made = append(made, path)
		}
		return err
	}
	if p.Spec.Disk != "" {
		if err := ensure("DISK_SIZE", p.Paths.Disk, p.BasePath, p.Config.DiskSize); err != nil {
			undo()
			return nil, false, err
		}
	}
	for _, d := range p.Config.ExtraDisks {
		if err := ensure(fmt.Sprintf("DISK%d_SIZE", d.Index), p.Paths.ExtraDisk(d.Index), "", d.Size); err != nil {
			undo()
			return nil, false, err
		}
	}
	if len(made) == 0 {
		return nil, false, nil
	}
	return undo, false, nil
}

// ensureDisk creates the qcow2 at path (on basePath, if given) or grows it
// to size, and says whether it created it.
func (p *Plan) ensureDisk(ctx context.Context, run RunFunc, sizeVar, path, basePath string, size int64) (bool, error) {
	var base *image.Info
	if basePath != "" {
		base = p.Base // read once, by the base image step
	}
	var overlay *image.Info
	switch img, err := image.Inspect(path); {
	case err == nil:
		overlay = &img
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	act, err := PlanDisk(base, basePath, overlay, size, sizeVar)
	if err != nil {
		return false, err
	}
	if act.Warning != "" {
		p.Warnings = append(p.Warnings, act.Warning)
	}
	args := act.QemuImgArgs(path, basePath)
	if args == nil {
		return false, nil
	}
	if _, err := qemuImg(ctx, run, args...); err != nil {
		if act.Create {
			os.Remove(path)
		}
		return false, fmt.Errorf("qemu-img %s %s: %w", args[0], path, err)
	}
	return act.Create, nil
}

func (p *Plan) uefiVars(*Prepared) (func(), bool, error) {
	if p.VarsTmpl == "" {
		return nil, false, nil
	}
	if _, err := os.Stat(p.Paths.Vars); err == nil {
		return nil, false, nil
	}
	if err := copyFile(p.VarsTmpl, p.Paths.Vars); err != nil {
		return nil, false, err
	}
	return func() { os.Remove(p.Paths.Vars) }, false, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := to + ".tmp"
	out, err := openPrivate(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, to)
}

func (p *Plan) seed(out *Prepared) (func(), bool, error) {
	if p.Spec.Seed == "" {
		return nil, false, nil
	}
	c := p.Config
	salt, err := p.salt()
	if err != nil {
		return nil, false, err
	}
	password, err := p.guestPassword(out)
	if err != nil {
		return nil, false, err
	}
	s := cloudinit.Seed{
		Hostname:      c.GuestName,
		User:          c.GuestUser,
		Password:      password,
		UserData:      c.UserData,
		NetworkConfig: c.NetworkConfig,
		Salt:          salt,
		Mounts:        p.Mounts,
	}
	if c.SSHPubKey != "" {
		s.SSHKeys = []string{c.SSHPubKey}
	}
	files, err := s.Files()
	if err != nil {
		return nil, false, err
	}
	return nil, false, cloudinit.WriteISO(p.Paths.Seed, files)
}

// salt keeps the password hash's salt in the state folder, so an unchanged
// configuration renders the same seed and cloud-init sees the same
// instance-id (no first-boot re-run on restart).
func (p *Plan) salt() (string, error) {
	s, _, err := keptSecret(p.Paths.Salt, cloudinit.NewSalt)
	return s, err
}

// guestPassword is GUEST_PASSWORD; without it and without SSH_PUBKEY, a
// random password kept in the state folder (and told once, when made),
// so that no VM shares a known default; with a key alone, none: password
// login is off and the password locked.
func (p *Plan) guestPassword(out *Prepared) (string, error) {
	c := p.Config
	if c.GuestPassword != "" || c.SSHPubKey != "" {
		return c.GuestPassword, nil
	}
	path := p.statePath(guestPasswordFile)
	pw, made, err := keptSecret(path, cloudinit.NewPassword)
	if made {
		out.Warnings = append(out.Warnings, fmt.Sprintf("neither GUEST_PASSWORD nor SSH_PUBKEY is set: %s's generated password is %s (kept in %s; shown only now)",
			c.GuestUser, pw, path))
	}
	return pw, err
}

// keptSecret reads a secret kept in a state file, or makes one with newSecret
// and keeps it; it reports whether it made it.
func keptSecret(path string, newSecret func() (string, error)) (string, bool, error) {
	b, err := readPrivate(path, 4096)
	if s := strings.TrimSpace(string(b)); err == nil && s != "" {
		return s, false, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	s, err := newSecret()
	if err != nil {
		return "", false, err
	}
	return s, true, writePrivate(path, []byte(s+"\n"))
}
