package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBootForwardSeedAndStop is the user's first run: the guest boots from
// the seed, its HTTP port answers through PORT_FWD, health says running,
// and SIGTERM powers it off with exit 0 and the state folder tidy.
func TestBootForwardSeedAndStop(t *testing.T) {
	needGuest(t)
	t.Parallel()
	env := GuestEnv(t)
	web := FreePort(t)
	env["PORT_FWD"] = fmt.Sprintf("%d:80", web)
	userData := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(userData, []byte("#cloud-config\nwrite_files:\n  - path: /etc/marker\n    content: vmrunner-marker-42\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env["CLOUD_INIT_USER_DATA"] = userData
	v := Start(t, env)
	v.WaitReady()

	console := v.Console()
	for _, want := range []string{
		"VMTEST cidata found=yes",
		"VMTEST-BEGIN vendor-data", // the built-in user setup moved here …
		"vmrunner-marker-42",       // … since the user's file is user-data
		"local-hostname: testvm",
	} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	nic := v.WaitLine(`^VMTEST nic name=eth0 mac=(\S+) mtu=\d+ ipv4=(\S*)`, time.Second)
	if nic[2] != "10.0.2.15/24" {
		t.Errorf("guest IPv4 = %q, want QEMU user-mode's 10.0.2.15/24", nic[2])
	}
	kept, err := os.ReadFile(filepath.Join(v.StateDir(), "mac-1"))
	if err != nil || strings.TrimSpace(string(kept)) != nic[1] {
		t.Errorf("mac-1 = %q (%v), guest MAC %s", kept, err, nic[1])
	}

	body := HTTPGet(t, fmt.Sprintf("http://127.0.0.1:%d/", web), time.Minute)
	if !strings.Contains(body, "vmtest-guest ok") {
		t.Errorf("forwarded port answered %q", body)
	}
	if out, err := health(v); err != nil {
		t.Errorf("vmrunner health while running: %v: %s", err, out)
	}

	start := time.Now()
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 0 {
		t.Fatalf("exit status after SIGTERM = %d, want 0 (guest powered off)", code)
	}
	t.Logf("SIGTERM to exit: %s", time.Since(start))
	if !strings.Contains(v.Console(), "VMTEST powerbutton") {
		t.Error("the guest never saw the ACPI power button")
	}
	serial, _ := os.ReadFile(filepath.Join(v.StateDir(), "serial.log"))
	if !strings.Contains(string(serial), "VMTEST ready") {
		t.Error("serial.log lacks the console output")
	}
	if _, err := os.Stat(filepath.Join(v.StateDir(), "qmp.sock")); err == nil {
		t.Error("qmp.sock left behind after a clean stop")
	}
	if out, err := health(v); err == nil {
		t.Errorf("vmrunner health after stop succeeded: %s", out)
	}
}

func health(v *VM) ([]byte, error) {
	cmd := exec.Command(binary, "health")
	cmd.Env = []string{"DATA_DIR=" + v.DataDir, "GUEST_NAME=" + v.Name, "PATH=" + os.Getenv("PATH")}
	return cmd.CombinedOutput()
}

// TestIgnoredPowerButtonIsForced: a guest that ignores ACPI is stopped by
// force after SHUTDOWN_TIMEOUT with exit 3, and no QEMU outlives it.
func TestIgnoredPowerButtonIsForced(t *testing.T) {
	needGuest(t)
	t.Parallel()
	env := GuestEnv(t)
	env["KERNEL_CMDLINE"] += " vmtest.ignore_powerbutton=1"
	env["SHUTDOWN_TIMEOUT"] = "3"
	v := Start(t, env)
	v.WaitReady()
	qemuPID := qemuPID(t, v)
	start := time.Now()
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 3 {
		t.Fatalf("exit status = %d, want 3 (forced after SHUTDOWN_TIMEOUT)", code)
	}
	if d := time.Since(start); d < 3*time.Second {
		t.Errorf("stopped after %s, before SHUTDOWN_TIMEOUT=3s", d)
	}
	if alive(qemuPID) {
		t.Errorf("QEMU %d still runs", qemuPID)
	}
}

// TestSecondSignalStopsAtOnce: a second SIGTERM during a graceful stop does
// not wait for SHUTDOWN_TIMEOUT.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	needGuest(t)
	t.Parallel()
	env := GuestEnv(t)
	env["KERNEL_CMDLINE"] += " vmtest.ignore_powerbutton=1"
	env["SHUTDOWN_TIMEOUT"] = "300"
	v := Start(t, env)
	v.WaitReady()
	v.Signal(syscall.SIGTERM)
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	v.Signal(syscall.SIGINT)
	if code := v.Wait(30 * time.Second); code != 3 {
		t.Fatalf("exit status = %d, want 3", code)
	}
	t.Logf("second signal to exit: %s", time.Since(start))
}

// TestQEMUDeathIsExit1: QEMU killed under the supervisor is a fault.
func TestQEMUDeathIsExit1(t *testing.T) {
	needGuest(t)
	t.Parallel()
	v := Start(t, GuestEnv(t))
	v.WaitLine(`^VMTEST init`, 3*time.Minute)
	if err := syscall.Kill(qemuPID(t, v), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := v.Wait(30 * time.Second); code != 1 {
		t.Fatalf("exit status = %d, want 1", code)
	}
	if !strings.Contains(v.Stderr(), "QEMU ended unexpectedly") {
		t.Error("the log does not say QEMU ended unexpectedly")
	}
}

// TestSupervisorDeathKillsQEMU: QEMU must not outlive a SIGKILLed supervisor.
func TestSupervisorDeathKillsQEMU(t *testing.T) {
	needGuest(t)
	t.Parallel()
	v := Start(t, GuestEnv(t))
	v.WaitLine(`^VMTEST init`, 3*time.Minute)
	pid := qemuPID(t, v)
	v.Signal(syscall.SIGKILL)
	v.Wait(10 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if alive(pid) {
		t.Fatalf("QEMU %d outlived its supervisor", pid)
	}
}

// TestPID1ReapsOrphans runs vmrunner as PID 1 of a new PID namespace with a
// QEMU wrapper that leaves orphans behind: they must be reaped (no zombie
// children of the supervisor) and QEMU's own exit status must survive.
func TestPID1ReapsOrphans(t *testing.T) {
	needGuest(t)
	needRoot(t)
	_, err := exec.LookPath("unshare")
	need(t, "unshare (util-linux)", err == nil)
	t.Parallel()
	qemu, _ := exec.LookPath("qemu-system-x86_64")
	wrapper := filepath.Join(t.TempDir(), "qemu-with-orphans")
	script := "#!/bin/sh\n# orphans: each subshell exits at once, leaving its sleep to PID 1\n" +
		"for i in 1 2 3 4 5; do (sleep 0.$i &) ; done\nexec " + qemu + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := GuestEnv(t)
	env["QEMU_BINARY"] = wrapper
	env["LOG_VERBOSE"] = "1"
	v := Start(t, env, "unshare", "-fp", "--mount-proc")
	v.WaitReady()
	if n := strings.Count(v.Stderr(), `"msg":"reaped orphan"`); n < 5 {
		t.Errorf("reaped %d orphans, want the wrapper's 5", n)
	}
	sup := supervisorPID(t, v)
	if got := nsPID(t, sup); got != 1 {
		t.Fatalf("vmrunner is PID %d in its namespace, want 1", got)
	}
	if z := zombieChildren(sup); len(z) > 0 {
		t.Errorf("zombie children of PID 1: %v", z)
	}
	if err := syscall.Kill(sup, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := v.Wait(time.Minute); code != 0 {
		t.Fatalf("exit status as PID 1 = %d, want 0", code)
	}
}

// qemuPID reads QEMU's pid from the supervisor's "QEMU started" log line.
func qemuPID(t *testing.T, v *VM) int {
	t.Helper()
	for _, line := range strings.Split(v.Stderr(), "\n") {
		var rec struct {
			Msg string `json:"msg"`
			PID int    `json:"pid"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "QEMU started" {
			// Inside a PID namespace the logged pid is the namespace's;
			// map it through the supervisor's children.
			if kids := children(supervisorPID(t, v)); len(kids) == 1 && rec.PID != kids[0] {
				return kids[0]
			}
			return rec.PID
		}
	}
	t.Fatal("no \"QEMU started\" line in the log")
	return 0
}

// supervisorPID is vmrunner's host pid: the started process itself, or
// its one child when a wrapper such as unshare runs it.
func supervisorPID(t *testing.T, v *VM) int {
	t.Helper()
	pid := v.cmd.Process.Pid
	for range 50 {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "vmrunner" {
			return pid
		}
		if kids := children(pid); len(kids) == 1 {
			pid = kids[0]
			continue
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no vmrunner process under pid %d", v.cmd.Process.Pid)
	return 0
}

func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(s)
			out = append(out, n)
		}
	}
	return out
}

func zombieChildren(pid int) []int {
	var z []int
	for _, c := range children(pid) {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		// state is the field after the parenthesised command name
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			z = append(z, c)
		}
	}
	return z
}

// nsPID is pid's number inside its own PID namespace (last NSpid field).
func nsPID(t *testing.T, pid int) int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" {
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	t.Fatal("no NSpid in /proc status")
	return 0
}

func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || !strings.HasPrefix(string(stat[i+1:]), " Z")
}

// TestConfigErrorCreatesNothing: a bad value exits 2 naming the variable,
// before any file or process exists.
func TestConfigErrorCreatesNothing(t *testing.T) {
	for _, tc := range []struct{ name, value, accepted string }{
		{"NETWORK_MODE", "wifi", "nat, bridge, direct, container or none"},
		{"PORT_FWD", "80", "host:guest"},
		{"NETWORK2_MTU", "9000", "NETWORK2_MODE"},
		{"MEMORY", "lots", "max or half"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			cmd := exec.Command(binary)
			cmd.Env = []string{"DATA_DIR=" + dataDir, "KERNEL=/bin/sh", tc.name + "=" + tc.value, "PATH=" + os.Getenv("PATH")}
			out, err := cmd.CombinedOutput()
			if cmd.ProcessState.ExitCode() != 2 {
				t.Fatalf("exit status %d (%v), want 2: %s", cmd.ProcessState.ExitCode(), err, out)
			}
			for _, want := range []string{tc.name, tc.value, tc.accepted} {
				if !strings.Contains(string(out), want) {
					t.Errorf("message lacks %q: %s", want, out)
				}
			}
			if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
				t.Errorf("DATA_DIR not empty after a configuration error: %v", entries)
			}
		})
	}
}
