package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitFile waits until path's content contains want.
func waitFile(t *testing.T, v *VM, path, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), want) {
			return
		}
		select {
		case <-v.exited:
			t.Fatalf("vmrunner exited (status %d) before %s showed %q", v.ExitCode(), path, want)
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not show %q within %s", path, want, timeout)
}

// TestClosedStdoutKeepsVMRunning: `vmrunner | head` closes the console's
// pipe early. vmrunner must neither die of SIGPIPE nor stop draining QEMU:
// the guest boots on, serial.log gets everything, the VM still stops
// cleanly.
func TestClosedStdoutKeepsVMRunning(t *testing.T) {
	needGuest(t)
	t.Parallel()
	env := GuestEnv(t)
	web := FreePort(t)
	env["PORT_FWD"] = fmt.Sprintf("%d:80", web)
	// bash reports vmrunner's own status: 141 would be death by SIGPIPE.
	v := Start(t, env, "bash", "-c", `"$@" | head -c 64 >/dev/null; exit ${PIPESTATUS[0]}`, "vmrunner-pipe")
	waitFile(t, v, filepath.Join(v.StateDir(), "serial.log"), "VMTEST ready", 3*time.Minute)
	if body := HTTPGet(t, fmt.Sprintf("http://127.0.0.1:%d/", web), time.Minute); !strings.Contains(body, "vmtest-guest ok") {
		t.Errorf("forwarded port answered %q", body)
	}
	if !strings.Contains(v.Stderr(), "console output to stdout failed") {
		t.Error("the log does not say the stdout console failed")
	}
	if err := syscall.Kill(supervisorPID(t, v), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := v.Wait(time.Minute); code != 0 {
		t.Fatalf("exit status = %d, want 0 (141: killed by SIGPIPE)", code)
	}
	serial, _ := os.ReadFile(filepath.Join(v.StateDir(), "serial.log"))
	if !strings.Contains(string(serial), "VMTEST powerbutton") {
		t.Error("serial.log stopped before the power-off")
	}
}

// TestSerialLogRotates: a tiny SERIAL_LOG_MAX keeps serial.log and one old
// file, each within the cap.
func TestSerialLogRotates(t *testing.T) {
	needGuest(t)
	t.Parallel()
	env := GuestEnv(t)
	env["SERIAL_LOG_MAX"] = "4K"
	env["KERNEL_CMDLINE"] = "console=ttyS0 no_timer_check" // not quiet: the kernel's messages fill several files
	v := Start(t, env)
	v.WaitReady()
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 0 {
		t.Fatalf("exit status = %d, want 0", code)
	}
	var all string
	for _, name := range []string{"serial.log.1", "serial.log"} {
		b, err := os.ReadFile(filepath.Join(v.StateDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 4096 {
			t.Errorf("%s holds %d bytes, over SERIAL_LOG_MAX=4K", name, len(b))
		}
		all += string(b)
	}
	if n := len(v.Console()); n <= 2*4096 {
		t.Fatalf("the guest printed only %d bytes: too little to show rotation", n)
	}
	if !strings.HasSuffix(v.Console(), all[len(all)-100:]) {
		t.Error("the kept files do not end as the console does")
	}
	matches, _ := filepath.Glob(filepath.Join(v.StateDir(), "serial.log*"))
	if len(matches) != 2 {
		t.Errorf("serial logs: %v, want serial.log and serial.log.1", matches)
	}
}

// TestGroupSignalStopsGuest: a terminal's Ctrl-C or a signal to the
// process group (timeout, job control) reaches vmrunner only, since QEMU
// has its own group; SIGHUP is a stop request: the guest powers off.
func TestGroupSignalStopsGuest(t *testing.T) {
	needGuest(t)
	t.Parallel()
	// SIGHUP's default action, whatever this test inherited: started
	// under nohup (as a CI job may be), vmrunner would see SIGHUP ignored
	// and, as it should, keep running on a hangup.
	v := Start(t, GuestEnv(t), "env", "--default-signal=HUP")
	v.WaitReady()
	qpid, spid := qemuPID(t, v), supervisorPID(t, v)
	qg, _ := syscall.Getpgid(qpid)
	sg, _ := syscall.Getpgid(spid)
	if qg == sg {
		t.Fatalf("QEMU shares vmrunner's process group %d", sg)
	}
	if err := syscall.Kill(-sg, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if code := v.Wait(time.Minute); code != 0 {
		t.Fatalf("exit status after SIGHUP to the group = %d, want 0 (guest powered off)", code)
	}
	if !strings.Contains(v.Console(), "VMTEST powerbutton") {
		t.Error("the guest never saw the ACPI power button")
	}
}

// TestQEMUTerminatedBySomeoneIsFault: QEMU exits 0 on SIGTERM; when
// vmrunner did not send it, that is a fault, not a power-off.
func TestQEMUTerminatedBySomeoneIsFault(t *testing.T) {
	needGuest(t)
	t.Parallel()
	v := Start(t, GuestEnv(t))
	v.WaitReady()
	if err := syscall.Kill(qemuPID(t, v), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := v.Wait(time.Minute); code != 1 {
		t.Fatalf("exit status = %d, want 1", code)
	}
	if !strings.Contains(v.Stderr(), "signal vmrunner did not send") {
		t.Error("the log does not say who stopped QEMU")
	}
}

// reachableDataDir is a DATA_DIR that QEMU's unprivileged user can reach
// (t.TempDir()'s parent is 0700), so that every test runs QEMU as it runs
// for users: confined.
func reachableDataDir(t *testing.T) string {
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// procStatus reads the named fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// asUser runs argv with uid and gid, returning its combined output and error.
func asUser(uid, gid uint32, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestQEMUConfined: run as root, vmrunner starts QEMU as an unprivileged
// user with no capabilities inside its seccomp sandbox; the guest boots,
// its forward answers, health works, the power button stops it. What
// QEMU's user may touch in the state folder is only what QEMU needs.
func TestQEMUConfined(t *testing.T) {
	needGuest(t)
	needRoot(t)
	t.Parallel()
	env := GuestEnv(t)
	web := FreePort(t)
	env["PORT_FWD"] = fmt.Sprintf("%d:80", web)
	// The test guest's folder may lie where QEMU's user cannot reach it
	// (a checkout under /root): use a copy in the reachable DATA_DIR.
	for _, v := range []string{"KERNEL", "INITRD"} {
		b, err := os.ReadFile(env[v])
		if err != nil {
			t.Fatal(err)
		}
		env[v] = filepath.Join(env["DATA_DIR"], filepath.Base(env[v]))
		if err := os.WriteFile(env[v], b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v := Start(t, env)
	v.WaitReady()

	st := procStatus(t, qemuPID(t, v))
	uids, gids := strings.Fields(st["Uid"]), strings.Fields(st["Gid"])
	if len(uids) != 4 || len(gids) != 4 {
		t.Fatalf("Uid %q Gid %q", st["Uid"], st["Gid"])
	}
	for _, id := range append(uids, gids...) {
		if id == "0" {
			t.Errorf("QEMU runs with Uid %q Gid %q: a root id is left", st["Uid"], st["Gid"])
		}
	}
	for field, want := range map[string]string{"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "Seccomp": "2", "NoNewPrivs": "1"} {
		if st[field] != want {
			t.Errorf("QEMU's %s = %q, want %q", field, st[field], want)
		}
	}
	if body := HTTPGet(t, fmt.Sprintf("http://127.0.0.1:%d/", web), time.Minute); !strings.Contains(body, "vmtest-guest ok") {
		t.Errorf("forwarded port answered %q", body)
	}
	if out, err := health(v); err != nil {
		t.Errorf("vmrunner health: %v: %s", err, out)
	}

	// QEMU's user, as a QEMU taken over by its guest would be: it cannot
	// read vmrunner's files, nor rename or remove them in the sticky folder.
	var uid, gid uint32
	fmt.Sscan(uids[0], &uid)
	fmt.Sscan(gids[0], &gid)
	state := v.StateDir()
	attacks := [][]string{
		{"cat", filepath.Join(state, "password-salt")},
		{"mv", filepath.Join(state, "serial.log"), filepath.Join(state, "x")},
		{"rm", "-f", filepath.Join(state, "lock")},
		{"ln", "-sf", "/etc/passwd", filepath.Join(state, "mac-1")},
		{"sh", "-c", "echo x >> " + filepath.Join(state, "serial.log")},
	}
	for _, a := range attacks {
		if out, err := asUser(uid, gid, a...); err == nil {
			t.Errorf("QEMU's user could %q: %s", a, out)
		}
	}
	// … while the files QEMU needs are its own.
	if out, err := asUser(uid, gid, "sh", "-c", "test -w "+filepath.Join(state, "seed.iso")); err != nil {
		t.Errorf("QEMU's user cannot write its seed: %v %s", err, out)
	}

	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 0 {
		t.Fatalf("exit status after SIGTERM = %d, want 0", code)
	}
	if strings.Contains(v.Stderr(), "QEMU runs as root") {
		t.Error("vmrunner fell back to running QEMU as root")
	}
}

// TestConfinementOptOut: SANDBOX=0 and QEMU_USER=root leave QEMU
// unconfined, and say so loudly; an explicit QEMU_USER that cannot reach
// the VM's files is refused with exit 2 before QEMU starts.
func TestConfinementOptOut(t *testing.T) {
	needGuest(t)
	needRoot(t)
	t.Parallel()
	env := GuestEnv(t)
	env["SANDBOX"] = "0"
	env["QEMU_USER"] = "root"
	v := Start(t, env)
	v.WaitLine(`^VMTEST init`, 3*time.Minute)
	st := procStatus(t, qemuPID(t, v))
	if st["Seccomp"] != "0" || !strings.HasPrefix(st["Uid"], "0\t") {
		t.Errorf("with SANDBOX=0 QEMU_USER=root: Seccomp %q Uid %q", st["Seccomp"], st["Uid"])
	}
	for _, want := range []string{"SANDBOX=0: QEMU runs without its seccomp sandbox", "QEMU_USER=root: QEMU runs as root"} {
		if !strings.Contains(v.Stderr(), want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	v.Signal(syscall.SIGTERM)
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 3 {
		t.Errorf("exit status after two signals = %d, want 3", code)
	}

	// A DATA_DIR of mode 0700: nobody cannot reach the state folder.
	env = GuestEnv(t)
	if err := os.Chmod(env["DATA_DIR"], 0o700); err != nil {
		t.Fatal(err)
	}
	env["QEMU_USER"] = "nobody"
	bad := Start(t, env)
	if code := bad.Wait(time.Minute); code != 2 {
		t.Fatalf("exit status with an unreachable state folder = %d, want 2", code)
	}
	if !strings.Contains(bad.Stderr(), "QEMU_USER=\"nobody\"") || !strings.Contains(bad.Stderr(), "not searchable by nobody") {
		t.Errorf("the error does not name QEMU_USER and the folder:\n%s", bad.Stderr())
	}
	if strings.Contains(bad.Stderr(), "QEMU started") {
		t.Error("QEMU was started")
	}
}
