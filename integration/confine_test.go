package integration

import (
	"fmt"
	"os"
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
	env["KERNEL_CMDLINE"] = "console=ttyS0" // not quiet: the kernel's messages fill several files
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
	v := Start(t, GuestEnv(t))
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
