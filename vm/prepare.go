package vm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmrunner/vmrunner/cloudinit"
	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/image"
	"github.com/vmrunner/vmrunner/netcfg"
	"github.com/vmrunner/vmrunner/qemu"
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

// Prepared is what the once-per-VM start-up made: the state folder, its
// lock and disks, and the facts the QEMU runs need.
type Prepared struct {
	BasePath string      // the image the disk overlays (downloaded, converted); "" for blank or no disk
	Base     *image.Info // BasePath's header, read once by the base image step
	CDROM    string      // a local ISO BOOT_FROM: the installer medium
	// Installed: the VM's disk existed before this start, so the
	// installer CD boots after it (see QEMUSpec).
	Installed bool
	UUID      string // the VM's SMBIOS UUID, kept in the state folder
	Warnings  []string
	// VNCPassword is the VNC password QEMU is given (VNC_PASSWORD, else the
	// kept or generated one); VNCPasswordNew says it was generated just now
	// and is to be logged, this once.
	VNCPassword    string
	VNCPasswordNew bool
	c              cleanups
}

// Release lets go of what Prepare made, in reverse order: the state
// folder's removal (PERSIST off), then the lock. Call it once the last
// QEMU run has ended; the errors of every release are joined.
func (p *Prepared) Release() error { return p.c.run(false) }

// Undo removes what Prepare made, as a failed Prepare would: for a VM
// whose first start failed, so nothing half-made stays behind.
func (p *Prepared) Undo() error { return p.c.run(true) }

// Prepare runs the once-per-VM start-up steps, in order: the base image,
// the state folder, its lock, MACs, disks, UUID and VNC password. When a step fails,
// everything made before it is undone, so a failed start leaves nothing
// half-made behind. ctx cancels a download in progress.
func Prepare(ctx context.Context, p *Plan, t Tools) (*Prepared, error) {
	out := &Prepared{}
	steps := []step{
		// The base image comes first: a wrong URL must leave no state.
		{"base image", func(ctx context.Context) error { return p.baseImage(ctx, t, out) }},
		{"state folder", func(context.Context) error { return p.stateFolder(out) }},
		{"lock", func(context.Context) error { return p.lock(out) }},
		{"removal at the end", func(context.Context) error { return p.removeAtEnd(out) }},
		{"MAC addresses", func(context.Context) error { return p.macs() }},
		{"disks", func(ctx context.Context) error { return p.disks(ctx, t.Run, out) }},
		{"UUID", func(context.Context) error { return p.uuid(out) }},
		{"VNC password", func(context.Context) error { return p.vncPassword(out) }},
	}
	if err := runSteps(ctx, &out.c, steps); err != nil {
		return nil, err
	}
	out.Warnings = append(append([]string{}, p.Warnings...), out.Warnings...)
	return out, nil
}

// DryRunSpec is the spec a first start would run, made without touching
// the host: --dry-run prints it.
func (p *Plan) DryRunSpec() (qemu.Spec, []string, error) {
	prep, err := DryRun(p)
	if err != nil {
		return qemu.Spec{}, nil, err
	}
	spec, err := p.QEMUSpec(prep, FirstSettings(prep))
	if err != nil {
		return spec, nil, err
	}
	noFiles := func(NICPlan) (*os.File, *os.File, error) { return nil, nil, nil }
	return spec, prep.Warnings, p.attachTaps(&spec, &inherited{}, noFiles)
}

// DryRun is what Prepare would return, without writing anything: the
// plan's choice of base or installer CD (a download's is made once it is
// fetched, so the command line shows its disk without a base).
func DryRun(p *Plan) (*Prepared, error) {
	out := &Prepared{UUID: "00000000-0000-0000-0000-000000000000", Warnings: p.Warnings}
	if b, err := readPrivate(p.Paths.UUID, 4096); err == nil && validUUID(strings.TrimSpace(string(b))) {
		out.UUID = strings.TrimSpace(string(b))
	}
	if p.Base != nil {
		out.use(*p.Base, FileExists(p.Paths.Disk))
	}
	return out, nil
}

// Settings are the choices a controller makes for one QEMU run.
type Settings struct {
	Boot     qemu.BootDevice // "" (the configured order), disk, cd or network
	BootMode config.BootMode // "": BOOT_MODE
	Medium   string          // the CD drive's medium; "": empty
}

// FirstSettings are the settings of the VM's first start: the installer
// ISO, if any, in the CD drive, and the configured boot order.
func FirstSettings(prep *Prepared) Settings { return Settings{Medium: prep.CDROM} }

// Run is what the per-run start-up made for one QEMU process: the spec it
// runs and the files it inherits.
type Run struct {
	Spec     qemu.Spec
	Warnings []string
	inherited
	tpm *TPMPlan // started by StartTPM once QEMU's user is known
	c   cleanups
}

// Files are what QEMU inherits as fds 3, 4, …
func (r *Run) Files() []*os.File { return r.files }

// Release undoes the run's start-up once its QEMU has ended: network links
// removed, inherited files and stale sockets gone.
func (r *Run) Release() error { return r.c.run(false) }

// StartRun runs the per-run start-up steps (sockets, UEFI variables, the
// cloud-init seed, the host network links) and returns the run's spec.
// A failing step undoes the earlier ones.
func StartRun(ctx context.Context, p *Plan, prep *Prepared, s Settings) (*Run, error) {
	spec, err := p.QEMUSpec(prep, s)
	if err != nil {
		return nil, err
	}
	out := &Run{Spec: spec, tpm: p.TPM}
	steps := []step{
		{"stale sockets", func(context.Context) error { return p.staleSockets(out) }},
		{"UEFI variables", func(context.Context) error { return p.uefiVars(out) }},
		{"cloud-init seed", func(context.Context) error { return p.seed(out) }},
		{"network", func(context.Context) error { return p.network(out) }},
		{"virtiofsd", func(context.Context) error { return p.virtiofsds(out) }},
	}
	if err := runSteps(ctx, &out.c, steps); err != nil {
		return nil, err
	}
	return out, nil
}

// QEMUSpec is the spec of one QEMU run: the plan's, with what start-up made
// and the run's settings. --dry-run and a real start both use it.
func (p *Plan) QEMUSpec(prep *Prepared, s Settings) (qemu.Spec, error) {
	spec := p.Spec
	spec.NICs = slices.Clone(p.Spec.NICs) // start-up fills in the taps' fds
	spec.UUID = prep.UUID
	if prep.Base != nil {
		spec.DiskBase, spec.DiskBaseFormat = prep.BasePath, string(prep.Base.Format)
	}
	spec.CDROM = s.Medium
	spec.CDDrive = true
	spec.Boot = s.Boot
	if s.Boot == qemu.BootDefault && len(spec.BootOrder) == 0 && s.Medium != "" && spec.Disk != "" {
		switch {
		case s.Medium != prep.CDROM:
			// The installer ISO boots first; a medium inserted later
			// does not take the disk's place unless asked to (boot cd).
			spec.Boot = qemu.BootDisk
		case prep.Installed && !p.Config.Hardware.ForceISO:
			// Once installed, the disk boots first and the installer
			// stays behind it, as installers such as Windows' need their
			// medium after the first reboot; FORCE_ISO=1 or BOOT_ORDER
			// keeps the CD first.
			spec.BootOrder = []qemu.BootDevice{qemu.BootDisk, qemu.BootCD}
		}
	}
	mode := s.BootMode
	if mode == "" {
		mode = p.Config.BootMode
	}
	spec.Firmware = nil
	if mode != config.BootLegacy {
		fw, ok := p.Firmwares[mode]
		if !ok {
			return spec, fmt.Errorf("no firmware for boot mode %s on this host", mode)
		}
		spec.Firmware = &qemu.Firmware{Code: fw.Code, Vars: p.Paths.Vars, Secure: mode == config.BootSecure}
	}
	spec.TPM = p.tpmSpec(mode)
	return spec, nil
}

// stateFolder makes the state folder private to this user (0700) and
// refuses one where a file vmrunner would open is a symlink or another
// user's, before anything is written there.
func (p *Plan) stateFolder(out *Prepared) error {
	dir := p.Paths.State
	if _, err := privateDir(filepath.Dir(dir)); err != nil {
		return err
	}
	made, err := privateDir(dir)
	if err != nil {
		return err
	}
	if made {
		out.c.onFailure("state folder", func() error { return os.RemoveAll(dir) })
	}
	return p.checkStateFiles()
}

// checkStateFiles checks every path vmrunner or QEMU opens in the state
// folder (see checkPrivate).
func (p *Plan) checkStateFiles() error {
	ps := p.Paths
	files := []string{ps.Disk, ps.Seed, ps.Vars, ps.Vars + ".tmp", ps.SerialLog, ps.SerialLog + ".1", ps.Lock, ps.Salt, ps.UUID, ps.VNCPassword,
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
	for _, s := range []string{ps.QMP, ps.QMPProbe, ps.Control, ps.VNCSocket, ps.TPMSocket()} {
		errs = append(errs, checkPrivate(s, true))
	}
	return errors.Join(errs...)
}

func (p *Plan) statePath(name string) string { return filepath.Join(p.Paths.State, name) }

// lock takes the state folder's lock. Holding it, a PERSIST=0 run's marker
// means that run was killed before it could remove the folder: what it
// left is removed now rather than reused.
func (p *Plan) lock(out *Prepared) error {
	f, err := openPrivate(p.Paths.Lock, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("another vmrunner is running the VM in %s: %w", p.Paths.State, err)
	}
	if _, err := os.Lstat(p.statePath(ephemeralMarker)); err == nil {
		if err := p.wipeState(); err != nil {
			f.Close()
			return err
		}
		out.Warnings = append(out.Warnings, fmt.Sprintf("removed what a killed PERSIST=0 run of this VM left in %s; starting afresh", p.Paths.State))
	}
	out.c.always("lock", f.Close)
	return nil
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
// reach a dead QEMU's path; the run's own go with it.
func (p *Plan) staleSockets(out *Run) error {
	remove := func() error {
		var errs []error
		for _, s := range []string{p.Paths.QMP, p.Paths.QMPProbe, p.Paths.VNCSocket, p.Paths.QGA} {
			if err := os.Remove(s); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	if err := remove(); err != nil {
		return err
	}
	out.c.always("QMP and VNC sockets", remove)
	return nil
}

func (p *Plan) macs() error {
	for _, n := range p.NICs {
		if err := netcfg.KeepMAC(p.Paths.State, n.Index, n.MAC); err != nil {
			return err
		}
	}
	return nil
}

// removeAtEnd makes the state folder go with the VM when PERSIST is off.
// It runs before the lock is let go, so that a next vmrunner of the same
// VM never sees a folder half removed. A marker says so meanwhile, for the
// next start after a kill (see lock).
func (p *Plan) removeAtEnd(out *Prepared) error {
	if p.Persist {
		return nil
	}
	if err := writePrivate(p.statePath(ephemeralMarker), []byte("PERSIST=0: this folder is removed when its VM ends\n")); err != nil {
		return err
	}
	out.c.always("state folder (PERSIST off)", func() error { return os.RemoveAll(p.Paths.State) })
	return nil
}

// disks makes or grows the VM's disk and the extra ones; a failure removes
// the disks this start made.
func (p *Plan) disks(ctx context.Context, run RunFunc, out *Prepared) error {
	ensure := func(sizeVar, path, basePath string, size int64) error {
		created, err := p.ensureDisk(ctx, run, sizeVar, path, basePath, size, out)
		if created {
			out.c.onFailure(path, func() error { return os.Remove(path) })
		}
		return err
	}
	if p.Spec.Disk != "" {
		if err := ensure("DISK_SIZE", p.Paths.Disk, out.BasePath, p.Config.DiskSize); err != nil {
			return err
		}
	}
	for _, d := range p.Config.ExtraDisks {
		if err := ensure(fmt.Sprintf("DISK%d_SIZE", d.Index), p.Paths.ExtraDisk(d.Index), "", d.Size); err != nil {
			return err
		}
	}
	return nil
}

// ensureDisk creates the qcow2 at path (on basePath, if given) or grows it
// to size, and says whether it created it.
func (p *Plan) ensureDisk(ctx context.Context, run RunFunc, sizeVar, path, basePath string, size int64, out *Prepared) (bool, error) {
	var base *image.Info
	if basePath != "" {
		base = out.Base // read once, by the base image step
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
		out.Warnings = append(out.Warnings, act.Warning)
	}
	act.Preallocate = p.Config.Hardware.Allocate
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

// uuid keeps the VM's SMBIOS UUID in the state folder: a guest (and a BMC)
// sees the same machine across runs.
func (p *Plan) uuid(out *Prepared) error {
	b, err := readPrivate(p.Paths.UUID, 4096)
	if err == nil && validUUID(strings.TrimSpace(string(b))) {
		out.UUID = strings.TrimSpace(string(b))
		return nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return err
	}
	r[6] = r[6]&0x0f | 0x40 // version 4
	r[8] = r[8]&0x3f | 0x80 // RFC 4122 variant
	out.UUID = fmt.Sprintf("%x-%x-%x-%x-%x", r[0:4], r[4:6], r[6:8], r[8:10], r[10:16])
	if err := writePrivate(p.Paths.UUID, []byte(out.UUID+"\n")); err != nil {
		return err
	}
	out.c.onFailure("uuid", func() error { return os.Remove(p.Paths.UUID) })
	return nil
}

var uuidForm = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func validUUID(s string) bool { return uuidForm.MatchString(s) }

// uefiVars gives the VM its own copy of the firmware's variables, once:
// the guest's boot entries then survive every later run. It runs at each
// start since the boot mode may have been switched to UEFI meanwhile.
func (p *Plan) uefiVars(out *Run) error {
	fw := out.Spec.Firmware
	if fw == nil {
		return nil
	}
	if _, err := os.Stat(p.Paths.Vars); err == nil {
		return nil
	}
	mode := config.BootUEFI
	if fw.Secure {
		mode = config.BootSecure
	}
	if err := copyFile(p.Firmwares[mode].VarsTemplate, p.Paths.Vars); err != nil {
		return err
	}
	out.c.onFailure("UEFI variables", func() error { return os.Remove(p.Paths.Vars) })
	return nil
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

func (p *Plan) seed(out *Run) error {
	if p.Spec.Seed == "" {
		return nil
	}
	c := p.Config
	salt, err := p.salt()
	if err != nil {
		return err
	}
	password, err := p.guestPassword(&out.Warnings)
	if err != nil {
		return err
	}
	s := SeedFor(c, password, salt)
	s.Mounts = p.Mounts
	files, err := s.Files()
	if err != nil {
		return err
	}
	return cloudinit.WriteISO(p.Paths.Seed, files)
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
func (p *Plan) guestPassword(warnings *[]string) (string, error) {
	c := p.Config
	if c.GuestPassword != "" || c.SSHPubKey != "" {
		return c.GuestPassword, nil
	}
	path := p.statePath(guestPasswordFile)
	pw, made, err := keptSecret(path, func() (string, error) { return cloudinit.NewPassword(20) })
	if made {
		*warnings = append(*warnings, fmt.Sprintf("neither GUEST_PASSWORD nor SSH_PUBKEY is set: %s's generated password is %s (kept in %s; shown only now)",
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
