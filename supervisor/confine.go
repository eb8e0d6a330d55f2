package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// QEMU runs as an unprivileged user when vmrunner runs as root, the way
// libvirt's DAC driver does it: vmrunner starts QEMU with that user's
// credentials (Go switches them before the parent-death signal is armed,
// so QEMU still dies with vmrunner; QEMU's own -runas would lose it, and
// its seccomp filter with elevateprivileges=deny kills -runas's setuid),
// the VM's own files are opened to that user's group, and everything QEMU
// opens by path elsewhere must already be reachable by it. Taps and macvtaps
// are passed as open descriptors and need nothing.

// DefaultQEMUUser is the dedicated user QEMU runs as when it exists (the
// container image creates it); else nobody.
const DefaultQEMUUser = "vmrunner-qemu"

// QEMUUser is who QEMU runs as.
type QEMUUser struct {
	Name     string
	UID, GID uint32
	Groups   []uint32 // supplementary groups, GID first
}

// Credential is what exec needs to start QEMU as u; nil for nil: QEMU
// runs as vmrunner does.
func (u *QEMUUser) Credential() *syscall.Credential {
	if u == nil {
		return nil
	}
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
}

func (u *QEMUUser) String() string {
	if u == nil {
		return "vmrunner's own user"
	}
	return fmt.Sprintf("%s (uid %d, gid %d)", u.Name, u.UID, u.GID)
}

// LookupQEMUUser resolves QEMU_USER: "" is the dedicated user or nobody,
// "root" or "0" keeps QEMU as root (nil user), else a user name or
// uid[:gid]. extraGroupsOf names devices (such as /dev/kvm) whose group
// QEMU joins.
func LookupQEMUUser(setting string, extraGroupsOf ...string) (*QEMUUser, error) {
	var u *QEMUUser
	switch setting {
	case "root", "0", "0:0":
		return nil, nil
	case "":
		var err error
		if u, err = lookupName(DefaultQEMUUser); err != nil {
			u = &QEMUUser{Name: "nobody", UID: 65534, GID: 65534}
		}
	default:
		var err error
		if u, err = parseUser(setting); err != nil {
			return nil, err
		}
	}
	u.Groups = []uint32{u.GID}
	for _, dev := range extraGroupsOf {
		var st unix.Stat_t
		if unix.Stat(dev, &st) == nil && st.Mode&0o060 == 0o060 && st.Gid != u.GID {
			u.Groups = append(u.Groups, st.Gid)
		}
	}
	return u, nil
}

func parseUser(s string) (*QEMUUser, error) {
	uidS, gidS, hasGID := strings.Cut(s, ":")
	uid, err := strconv.ParseUint(uidS, 10, 32)
	if err != nil {
		if hasGID {
			return nil, fmt.Errorf("%q: a name or uid[:gid]", s)
		}
		return lookupName(s)
	}
	gid := uid
	if hasGID {
		if gid, err = strconv.ParseUint(gidS, 10, 32); err != nil {
			return nil, fmt.Errorf("%q: the gid is not a number", s)
		}
	}
	if uid == 0 || gid == 0 {
		return nil, fmt.Errorf("%q: uid and gid must not be 0 (QEMU_USER=root keeps QEMU as root)", s)
	}
	return &QEMUUser{Name: s, UID: uint32(uid), GID: uint32(gid)}, nil
}

func lookupName(name string) (*QEMUUser, error) {
	pw, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err1 := strconv.ParseUint(pw.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(pw.Gid, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 || gid == 0 {
		return nil, fmt.Errorf("user %s: uid %s gid %s: want non-zero numbers", name, pw.Uid, pw.Gid)
	}
	return &QEMUUser{Name: name, UID: uint32(uid), GID: uint32(gid)}, nil
}

// QEMUFiles are the files QEMU opens by path.
type QEMUFiles struct {
	State string   // the state folder: QEMU creates its QMP sockets here
	Own   []string // files in the state folder QEMU opens (disks, UEFI variables, seed, VNC password) and folders it makes sockets in: handed to the user
	Read  []string // files elsewhere QEMU reads (kernel, base image, firmware)
	Write []string // files elsewhere QEMU reads and writes (host devices, 9p folders)
	Root  string   // why QEMU must stay root; "": it need not
	// Devices are character devices whose group QEMU's user joins, as it
	// joins /dev/kvm's (a GPU's render node).
	Devices []string
}

// Unreachable is a file QEMU's user could not open.
type Unreachable struct {
	Path   string
	Reason string
}

func (e *Unreachable) Error() string { return e.Path + ": " + e.Reason }

// Check finds the first file of f that u cannot reach with the access
// QEMU needs, ignoring ACLs: the folders above it must be searchable, the
// file readable (and writable for Write).
func (u *QEMUUser) Check(f QEMUFiles) error {
	// vmrunner's own folders (DATA_DIR/vms and the state folder) are
	// opened by Grant; everything above them must be searchable already.
	if err := u.reach(filepath.Dir(filepath.Dir(f.State)), 0o1); err != nil {
		return err
	}
	for _, p := range f.Read {
		if err := u.reach(p, 0o4); err != nil {
			return err
		}
	}
	for _, p := range f.Write {
		if err := u.reach(p, 0o6); err != nil {
			return err
		}
	}
	return nil
}

// reach checks that every folder from / to path is searchable and path
// itself allows want (r=4, w=2, x=1 as in a mode's other bits).
func (u *QEMUUser) reach(path string, want uint32) error {
	// A relative path (KERNEL=.cache/guest/vmlinuz) is QEMU's, opened
	// from vmrunner's working folder, which QEMU inherits.
	path, err := filepath.Abs(path)
	if err != nil {
		return &Unreachable{path, err.Error()}
	}
	dir := "/"
	for _, part := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return &Unreachable{path, err.Error()}
		}
		if !u.may(st, 0o1) {
			return &Unreachable{path, fmt.Sprintf("folder %s is not searchable by %s (mode %#o, owner %d:%d)", dir, u, st.Mode&0o7777, st.Uid, st.Gid)}
		}
		dir = filepath.Join(dir, part)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return &Unreachable{path, err.Error()}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		want |= 0o1 // a folder's files are reached through it (a 9p share)
	}
	if !u.may(st, want) {
		what := map[uint32]string{0o1: "searchable", 0o4: "readable", 0o6: "readable and writable", 0o5: "readable and searchable", 0o7: "readable, writable and searchable"}[want]
		return &Unreachable{path, fmt.Sprintf("not %s by %s (mode %#o, owner %d:%d)", what, u, st.Mode&0o7777, st.Uid, st.Gid)}
	}
	return nil
}

// may applies the mode bits that hold for u: owner's, else group's, else
// other's.
func (u *QEMUUser) may(st unix.Stat_t, want uint32) bool {
	bits := st.Mode & 0o7
	switch {
	case st.Uid == u.UID:
		bits = st.Mode >> 6 & 0o7
	case u.inGroup(st.Gid):
		bits = st.Mode >> 3 & 0o7
	}
	return bits&want == want
}

func (u *QEMUUser) inGroup(gid uint32) bool {
	for _, g := range u.Groups {
		if g == gid {
			return true
		}
	}
	return gid == u.GID
}

// Grant gives u what QEMU needs of the VM's own files while vmrunner
// keeps owning them (its state checks refuse another user's files): the
// folder above the state folder becomes searchable (0711: nothing listed);
// the state folder root:GID mode 1770, so QEMU can make its sockets there
// but, the folder being sticky, cannot rename or remove vmrunner's files
// (lock, serial log, MACs, password); the files QEMU opens get u's group,
// writable by it (0660: disks, UEFI variables, seed). Call Check first.
func (u *QEMUUser) Grant(f QEMUFiles) error {
	vms := filepath.Dir(f.State)
	var st unix.Stat_t
	if err := unix.Stat(vms, &st); err != nil {
		return fmt.Errorf("opening %s to %s: %w", vms, u, err)
	}
	if err := unix.Chmod(vms, st.Mode&0o7777|0o711); err != nil {
		return fmt.Errorf("opening %s to %s: %w", vms, u, err)
	}
	if err := os.Lchown(f.State, -1, int(u.GID)); err != nil {
		return fmt.Errorf("handing the state folder to %s: %w", u, err)
	}
	if err := unix.Chmod(f.State, 0o1770); err != nil {
		return fmt.Errorf("handing the state folder to %s: %w", u, err)
	}
	for _, p := range f.Own {
		err := os.Lchown(p, -1, int(u.GID))
		if err == nil {
			mode := uint32(0o660)
			if st, serr := os.Lstat(p); serr == nil && st.IsDir() {
				mode = 0o770 // a folder QEMU makes a socket in
			}
			err = unix.Fchmodat(unix.AT_FDCWD, p, mode, 0)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("handing %s to %s: %w", p, u, err)
		}
	}
	return nil
}

// Confine decides who QEMU runs as: nil (unchanged) unless vmrunner runs
// as root and setting (QEMU_USER) does not say root. The default user
// that cannot reach a file of f leaves QEMU as root, with a warning that
// says why; an explicit one is an error.
func Confine(setting string, f QEMUFiles) (u *QEMUUser, warning string, err error) {
	if os.Geteuid() != 0 {
		return nil, "", nil
	}
	if u, err = LookupQEMUUser(setting, append([]string{"/dev/kvm"}, f.Devices...)...); err == nil && u != nil && !canSwitchUser() {
		// docker run --cap-drop ALL: root, but QEMU then has no
		// capabilities either.
		why := "vmrunner lacks CAP_CHOWN, CAP_SETUID or CAP_SETGID to hand QEMU to " + u.String()
		if setting != "" {
			return nil, "", errors.New(why)
		}
		return nil, "QEMU runs as root (without capabilities, as vmrunner): " + why, nil
	}
	if err != nil || u == nil {
		if err == nil {
			warning = "QEMU_USER=root: QEMU runs as root, unconfined by user"
		}
		return nil, warning, err
	}
	if f.Root != "" {
		if setting != "" {
			return nil, "", fmt.Errorf("QEMU must run as root: %s (QEMU_USER=root, or FILESYSTEM_ACCESSMODE=mapped or squash)", f.Root)
		}
		return nil, fmt.Sprintf("QEMU runs as root: %s (with mapped or squash it runs as %s)", f.Root, u), nil
	}
	if err := u.Check(f); err != nil {
		if setting != "" {
			return nil, "", err
		}
		return nil, fmt.Sprintf("QEMU runs as root: its user %s cannot reach %v; make that path reachable, or set QEMU_USER", u, err), nil
	}
	return u, "", nil
}

// canSwitchUser reports whether this process may chown files and start a
// child as another user.
func canSwitchUser() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	const need = 1<<unix.CAP_CHOWN | 1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID
	return data[0].Effective&need == need
}
