package supervisor

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestQEMUUserMay(t *testing.T) {
	u := &QEMUUser{Name: "q", UID: 1000, GID: 1000, Groups: []uint32{1000, 36}}
	tests := []struct {
		name     string
		uid, gid uint32
		mode     uint32
		want     uint32
		ok       bool
	}{
		{"owner rw", 1000, 0, 0o600, 0o6, true},
		{"owner without w, others with it", 1000, 0, 0o466, 0o6, false}, // the owner's bits apply, not the others'
		{"group r", 0, 36, 0o640, 0o4, true},
		{"group w missing", 0, 36, 0o640, 0o6, false},
		{"other r", 0, 0, 0o604, 0o4, true},
		{"other none", 0, 0, 0o600, 0o4, false},
		{"folder searchable by others", 0, 0, 0o711, 0o1, true},
		{"folder 0700", 0, 0, 0o700, 0o1, false},
		{"primary group", 0, 1000, 0o070, 0o4, true},
	}
	for _, tc := range tests {
		st := unix.Stat_t{Uid: tc.uid, Gid: tc.gid, Mode: tc.mode}
		if got := u.may(st, tc.want); got != tc.ok {
			t.Errorf("%s: may = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestParseQEMUUser(t *testing.T) {
	tests := []struct {
		in       string
		uid, gid uint32
		err      string
	}{
		{"1000", 1000, 1000, ""},
		{"1000:36", 1000, 36, ""},
		{"0", 0, 0, "must not be 0"},
		{"1000:0", 0, 0, "must not be 0"},
		{"1000:x", 0, 0, "gid is not a number"},
		{"x:1", 0, 0, "a name or uid[:gid]"},
		{"no-such-user-here", 0, 0, "unknown user"},
	}
	for _, tc := range tests {
		u, err := parseUser(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseUser(%q) = %v, %v; want error %q", tc.in, u, err, tc.err)
			}
		case err != nil || u.UID != tc.uid || u.GID != tc.gid:
			t.Errorf("parseUser(%q) = %+v, %v", tc.in, u, err)
		}
	}
	for _, root := range []string{"root", "0", "0:0"} {
		if u, err := LookupQEMUUser(root); u != nil || err != nil {
			t.Errorf("LookupQEMUUser(%q) = %v, %v; want QEMU left as root", root, u, err)
		}
	}
	if u, err := LookupQEMUUser(""); err != nil || u == nil || u.UID == 0 {
		t.Errorf("LookupQEMUUser(\"\") = %v, %v; want an unprivileged default", u, err)
	}
}

// Check walks every folder above a file: a 0700 one anywhere on the way
// makes the file unreachable, whatever the file's own mode.
func TestQEMUUserCheck(t *testing.T) {
	top := t.TempDir()
	for _, d := range []string{filepath.Dir(top), top} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Skip(err)
		}
	}
	open := filepath.Join(top, "open")
	closed := filepath.Join(top, "closed")
	for _, d := range []string{open, closed} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(open, "kernel"), filepath.Join(closed, "kernel")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(open, "private"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(open, "listable") // r without x: names but no files
	if err := os.Mkdir(readOnly, 0o744); err != nil {
		t.Fatal(err)
	}
	u := &QEMUUser{Name: "q", UID: 54321, GID: 54321, Groups: []uint32{54321}}
	if os.Geteuid() == 54321 {
		t.Skip("the test user is the fake QEMU user")
	}
	tests := []struct {
		name string
		f    QEMUFiles
		bad  string // the reason's start; "" for reachable
	}{
		{"reachable", QEMUFiles{State: filepath.Join(open, "vm"), Read: []string{filepath.Join(open, "kernel")}}, ""},
		{"kernel in a 0700 folder", QEMUFiles{State: filepath.Join(open, "vm"), Read: []string{filepath.Join(closed, "kernel")}}, "folder " + closed + " is not searchable"},
		{"state folder under a 0700 folder", QEMUFiles{State: filepath.Join(closed, "vms", "vm")}, "not searchable"},
		{"vmrunner's own folders are opened by Grant", QEMUFiles{State: filepath.Join(closed, "vm")}, ""},
		{"private file", QEMUFiles{State: filepath.Join(open, "vm"), Read: []string{filepath.Join(open, "private")}}, "not readable"},
		{"device not writable", QEMUFiles{State: filepath.Join(open, "vm"), Write: []string{filepath.Join(open, "kernel")}}, "not readable and writable"},
		{"missing", QEMUFiles{State: filepath.Join(open, "vm"), Read: []string{filepath.Join(open, "none")}}, "no such file"},
		{"read-only 9p folder", QEMUFiles{State: filepath.Join(open, "vm"), Read: []string{open}}, ""},
		{"read-write 9p folder of root's", QEMUFiles{State: filepath.Join(open, "vm"), Write: []string{open}}, "not readable, writable and searchable"},
		{"9p folder QEMU may only read", QEMUFiles{State: filepath.Join(open, "vm"), Read: []string{readOnly}}, "not readable and searchable"},
	}
	// A relative path is QEMU's too, from the working folder it inherits.
	t.Chdir(open)
	tests = append(tests, struct {
		name string
		f    QEMUFiles
		bad  string
	}{"relative path", QEMUFiles{State: filepath.Join(open, "vm"), Read: []string{"kernel"}}, ""})
	for _, tc := range tests {
		err := u.Check(tc.f)
		var ue *Unreachable
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.bad != "" && (!errors.As(err, &ue) || !strings.Contains(ue.Reason, tc.bad)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.bad)
		}
	}
}

// TestConfineRoot: a share that needs QEMU as root (9p passthrough)
// keeps the default user root with a warning and refuses an explicit one.
func TestConfineRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("confinement applies only as root")
	}
	if !canSwitchUser() {
		t.Skip("no CAP_CHOWN/SETUID/SETGID")
	}
	f := QEMUFiles{State: filepath.Join(t.TempDir(), "vm"), Root: "the shared folder /srv is served over 9p with ACCESSMODE=passthrough"}
	u, warning, err := Confine("", f)
	if u != nil || err != nil || !strings.Contains(warning, "QEMU runs as root: the shared folder /srv") {
		t.Errorf("Confine(default) = %v, %q, %v", u, warning, err)
	}
	if _, _, err := Confine("12345", f); err == nil || !strings.Contains(err.Error(), "QEMU_USER=root") {
		t.Errorf("Confine(QEMU_USER=12345) = %v, want refused", err)
	}
}

func TestQEMUUserGrant(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	vms := t.TempDir()
	state := filepath.Join(vms, "vm")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(vms, 0o700); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(state, "disk.qcow2")
	salt := filepath.Join(state, "password-salt")
	for _, f := range []string{disk, salt} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	u := &QEMUUser{Name: "q", UID: 54321, GID: 54322}
	if err := u.Grant(QEMUFiles{State: state, Own: []string{disk, filepath.Join(state, "missing.fd")}}); err != nil {
		t.Fatal(err)
	}
	check := func(p string, uid, gid, mode uint32) {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != uid || st.Gid != gid || st.Mode&0o7777 != mode {
			t.Errorf("%s: %d:%d %#o, want %d:%d %#o", p, st.Uid, st.Gid, st.Mode&0o7777, uid, gid, mode)
		}
	}
	check(vms, 0, 0, 0o711)
	check(state, 0, 54322, 0o1770)
	check(disk, 0, 54322, 0o660) // still vmrunner's: its state checks refuse other users' files
	check(salt, 0, 0, 0o600)
}

// Without the capabilities to switch users (docker run --cap-drop ALL),
// the default leaves QEMU as vmrunner's user and says so; an explicit
// QEMU_USER is refused.
func TestConfineWithoutCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the capability check is reached only as root")
	}
	if os.Getenv("CONFINE_CHILD") == "1" {
		runtime.LockOSThread() // capabilities belong to a thread: Capset and Confine's check on this one
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, unix.CAP_SETUID, 0, 0, 0); err != nil {
			t.Fatal(err)
		}
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			t.Fatal(err)
		}
		data[0].Effective &^= 1 << unix.CAP_SETUID
		data[0].Permitted &^= 1 << unix.CAP_SETUID
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			t.Fatal(err)
		}
		f := QEMUFiles{State: filepath.Join(t.TempDir(), "vm")}
		u, warning, err := Confine("", f)
		if u != nil || err != nil || !strings.Contains(warning, "lacks CAP_CHOWN, CAP_SETUID or CAP_SETGID") {
			t.Errorf("Confine(default) = %v, %q, %v", u, warning, err)
		}
		if _, _, err := Confine("12345", f); err == nil {
			t.Error("Confine(QEMU_USER=12345) without CAP_SETUID succeeded")
		}
		return
	}
	// Drop the capability in a child process of the test binary, not in
	// this one, whose other tests need it.
	cmd := exec.Command(os.Args[0], "-test.run=^TestConfineWithoutCapabilities$", "-test.v")
	cmd.Env = append(os.Environ(), "CONFINE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Errorf("child: %v\n%s", err, out)
	}
}
