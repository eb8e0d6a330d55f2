package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ctl runs a client verb of vmrunner against v, with only DATA_DIR and
// GUEST_NAME set, as a user would with docker exec.
func ctl(v *VM, args ...string) (string, int) {
	cmd := exec.Command(binary, args...)
	cmd.Env = []string{"DATA_DIR=" + v.DataDir, "GUEST_NAME=" + v.Name, "PATH=" + os.Getenv("PATH")}
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState.ExitCode()
}

func mustCtl(t *testing.T, v *VM, args ...string) string {
	t.Helper()
	out, code := ctl(v, args...)
	if code != 0 {
		t.Fatalf("vmrunner %s: exit %d: %s", strings.Join(args, " "), code, out)
	}
	return out
}

// waitCount waits until n console lines match re and returns the last.
func waitCount(t *testing.T, v *VM, re string, n int, timeout time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		var hits [][]string
		for _, line := range strings.Split(v.Console(), "\n") {
			if m := rx.FindStringSubmatch(strings.TrimRight(line, "\r")); m != nil {
				hits = append(hits, m)
			}
		}
		if len(hits) >= n {
			return hits[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d console lines match %q within %s, want %d", len(hits), re, timeout, n)
		}
		select {
		case <-v.exited:
			t.Fatalf("vmrunner exited (status %d) waiting for %q", v.ExitCode(), re)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func waitPower(t *testing.T, v *VM, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := status(t, v)
		if st.Power == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("power %q, want %q", st.Power, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type vmStatus struct {
	Name      string    `json:"name"`
	UUID      string    `json:"uuid"`
	Power     string    `json:"power"`
	StartedAt time.Time `json:"started_at"`
	PID       int       `json:"pid"`
	Accel     string    `json:"accel"`
	MemoryMiB int       `json:"memory_mib"`
	Boot      struct {
		Device string `json:"device"`
		Once   bool   `json:"once"`
	} `json:"boot"`
	Media struct {
		Source string `json:"source"`
	} `json:"media"`
	NICs []struct {
		Index    int      `json:"index"`
		Mode     string   `json:"mode"`
		MAC      string   `json:"mac"`
		Forwards []string `json:"forwards"`
	} `json:"nics"`
	LastExit string `json:"last_exit"`
}

func status(t *testing.T, v *VM) vmStatus {
	t.Helper()
	out := mustCtl(t, v, "status", "--json")
	var st vmStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v: %s", err, out)
	}
	return st
}

// consoleClient is `vmrunner console` run from a second process.
type consoleClient struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
}

func attachConsole(t *testing.T, v *VM) *consoleClient {
	t.Helper()
	c := &consoleClient{cmd: exec.Command(binary, "console")}
	c.cmd.Env = []string{"DATA_DIR=" + v.DataDir, "GUEST_NAME=" + v.Name}
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	c.cmd.Stdout = c
	c.cmd.Stderr = c
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
	return c
}

func (c *consoleClient) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *consoleClient) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// run types a shell command and waits for the line it prints last.
func (c *consoleClient) run(t *testing.T, command, done string) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, command+"; echo "+done+"\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for !regexp.MustCompile(`(?m)^` + done + `\r?$`).MatchString(c.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q from %q; the console shows:\n%s", done, command, c.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLifecycleKeepAlive: with KEEP_ALIVE_AFTER_VM_STOP=1 the VM goes
// on → reboot → off → on inside one vmrunner, keeping its MAC, disk
// content and UUID; a second process attaches to the console while the
// first keeps the stdout mirror; status --json shows what a user needs;
// health and health --alive tell running from alive; another uid is
// refused by the control socket.
func TestLifecycleKeepAlive(t *testing.T) {
	needGuest(t)
	t.Parallel()
	env := GuestEnv(t)
	env["KEEP_ALIVE_AFTER_VM_STOP"] = "1"
	env["BOOT_FROM"] = "blank"
	env["DISK_SIZE"] = "64M"
	// no_timer_check: a host under load must not make the guest kernel
	// give up on its timer (a TCG guest's IO-APIC check panics then).
	env["KERNEL_CMDLINE"] += " vmtest.shell=1 no_timer_check"
	env["SHUTDOWN_TIMEOUT"] = "120"
	v := Start(t, env)
	v.WaitLine(`^VMTEST ready`, 8*time.Minute)
	mac := v.WaitLine(`^VMTEST nic name=eth0 mac=(\S+)`, time.Second)[1]

	st := status(t, v)
	if st.Power != "running" || st.PID <= 0 || st.Accel != "tcg" || st.MemoryMiB != 512 || st.UUID == "" || st.StartedAt.IsZero() {
		t.Errorf("status: %+v", st)
	}
	if len(st.NICs) != 1 || st.NICs[0].MAC != mac || st.NICs[0].Mode != "nat" ||
		!strings.Contains(strings.Join(st.NICs[0].Forwards, ","), fmt.Sprintf("tcp 127.0.0.1:%d -> 22", v.SSHPort)) {
		t.Errorf("status NICs %+v, guest MAC %s", st.NICs, mac)
	}
	uuid := st.UUID

	// A second process types into the console; the first still mirrors it.
	con := attachConsole(t, v)
	con.run(t, "echo vmtest-mark:kept-42 | dd of=/dev/vda bs=512 conv=sync,notrunc 2>/dev/null; sync", "MARKED")
	v.WaitLine(`^MARKED\r?$`, 10*time.Second)

	if out, code := ctl(v, "health"); code != 0 {
		t.Errorf("health while running: %d %s", code, out)
	}
	if testing.Verbose() {
		t.Logf("status:\n%s", mustCtl(t, v, "status"))
	}

	// Reboot: a new QEMU from the same state folder.
	mustCtl(t, v, "reboot")
	waitCount(t, v, `^VMTEST ready`, 2, 8*time.Minute)
	disk := waitCount(t, v, `^VMTEST disk name=vda size=(\d+) mark=(\S*)`, 2, time.Second)
	if disk[2] != "kept-42" {
		t.Errorf("after reboot the disk's mark is %q, want kept-42", disk[2])
	}
	if m := waitCount(t, v, `^VMTEST nic name=eth0 mac=(\S+)`, 2, time.Second)[1]; m != mac {
		t.Errorf("MAC after reboot %s, want %s", m, mac)
	}
	if st2 := status(t, v); st2.PID == st.PID || st2.UUID != uuid {
		t.Errorf("after reboot pid %d (was %d), uuid %s (was %s)", st2.PID, st.PID, st2.UUID, uuid)
	}

	// Off, and vmrunner stays.
	mustCtl(t, v, "stop")
	waitPower(t, v, "off", 2*time.Minute)
	if out, code := ctl(v, "health"); code != 1 {
		t.Errorf("health while off: %d %s", code, out)
	}
	if out, code := ctl(v, "health", "--alive"); code != 0 {
		t.Errorf("health --alive while off: %d %s", code, out)
	}
	if st := status(t, v); st.LastExit != "guest powered off" {
		t.Errorf("last exit %q", st.LastExit)
	}
	if out, code := ctl(v, "resume"); code != 1 || !strings.Contains(out, "off") {
		t.Errorf("resume while off: %d %s", code, out)
	}
	refusedForOtherUser(t, v)

	// On again.
	mustCtl(t, v, "start")
	waitCount(t, v, `^VMTEST ready`, 3, 8*time.Minute)
	if d := waitCount(t, v, `^VMTEST disk name=vda size=(\d+) mark=(\S*)`, 3, time.Second); d[2] != "kept-42" {
		t.Errorf("after off/on the disk's mark is %q", d[2])
	}
	if m := waitCount(t, v, `^VMTEST nic name=eth0 mac=(\S+)`, 3, time.Second)[1]; m != mac {
		t.Errorf("MAC after off/on %s, want %s", m, mac)
	}

	v.Signal(syscall.SIGTERM)
	if code := v.Wait(2 * time.Minute); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
	if !strings.Contains(con.String(), "kept-42") {
		t.Errorf("the second console did not see the guest's output")
	}
}

// refusedForOtherUser runs vmrunner status as uid 65534 with every folder
// on the way open to it: the 0600 socket refuses the connection.
func refusedForOtherUser(t *testing.T, v *VM) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: the other-user check is skipped")
		return
	}
	dir, err := os.MkdirTemp("", "vmrunner-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "vmrunner")
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := v.StateDir(); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chmod(dir, 0o755)
	cmd := exec.Command(bin, "status")
	cmd.Env = []string{"DATA_DIR=" + v.DataDir, "GUEST_NAME=" + v.Name}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "permission denied") {
		t.Errorf("status as uid 65534: exit %d: %s", cmd.ProcessState.ExitCode(), out)
	}
}

// isoWith makes an ISO 9660 image holding one file with content.
func isoWith(t *testing.T, label, content string, extra ...string) string {
	t.Helper()
	_, err := exec.LookPath("genisoimage")
	need(t, "genisoimage", err == nil)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "medium.txt"), []byte(content+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(dir, label+".iso")
	args := append([]string{"-quiet", "-o", iso, "-V", label}, extra...)
	if out, err := exec.Command("genisoimage", append(args, root)...).CombinedOutput(); err != nil {
		t.Fatalf("genisoimage: %v: %s", err, out)
	}
	readableByAll(t, iso)
	return iso
}

// readableByAll opens path and the folders above it (up to the temporary
// folder) to every user: QEMU opens a medium as its own user (QEMU_USER).
func readableByAll(t *testing.T, path string) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(path); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCDChangeWhileRunning: media insert, change and eject over QMP are
// seen by the running guest in its CD drive (sr0).
func TestCDChangeWhileRunning(t *testing.T) {
	needGuest(t)
	t.Parallel()
	isoA := isoWith(t, "MEDIUMA", "medium-content-A")
	isoB := isoWith(t, "MEDIUMB", "medium-content-B")
	env := GuestEnv(t)
	env["KERNEL_CMDLINE"] += " vmtest.shell=1 no_timer_check"
	v := Start(t, env)
	v.WaitReady()
	con := attachConsole(t, v)
	read := "mount -t iso9660 -o ro /dev/sr0 /mnt 2>&1 && cat /mnt/*; umount /mnt 2>/dev/null"

	con.run(t, read, "EMPTY-READ")
	if !strings.Contains(con.String(), "No medium found") && !strings.Contains(con.String(), "mount:") {
		t.Errorf("reading the empty drive: %s", con.String())
	}
	mustCtl(t, v, "media", "insert", isoA)
	con.run(t, read, "READ-A")
	if !strings.Contains(con.String(), "medium-content-A") {
		t.Errorf("the guest does not see medium A:\n%s", con.String())
	}
	mustCtl(t, v, "media", "insert", isoB)
	con.run(t, read, "READ-B")
	if !strings.Contains(con.String(), "medium-content-B") {
		t.Errorf("the guest does not see medium B:\n%s", con.String())
	}
	if st := status(t, v); st.Media.Source != isoB {
		t.Errorf("status media %q, want %s", st.Media.Source, isoB)
	}
	mustCtl(t, v, "media", "eject")
	before := strings.Count(con.String(), "medium-content-")
	con.run(t, read, "READ-EJECTED")
	if strings.Count(con.String(), "medium-content-") != before {
		t.Errorf("the guest still reads a medium after eject:\n%s", con.String())
	}
	if out, code := ctl(v, "media", "insert", "file:///etc/passwd"); code != 1 || !strings.Contains(out, "accepted") {
		t.Errorf("a file:// medium: %d %s", code, out)
	}
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(2 * time.Minute); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// bootSector is x86 real-mode code that writes the NUL-terminated text
// after it to COM1 and halts, wherever it is loaded.
func bootSector(msg string) []byte {
	code := []byte{
		0x0e, 0x1f, // push cs; pop ds
		0xe8, 0x00, 0x00, // call next
		0x5e,             // next: pop si
		0x83, 0xc6, 0x13, // add si, msg-next
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xac,       // loop: lodsb
		0x84, 0xc0, // test al, al
		0x74, 0x03, // jz halt
		0xee,       // out dx, al
		0xeb, 0xf8, // jmp loop
		0xfa,       // halt: cli
		0xf4,       // hlt
		0xeb, 0xfc, // jmp halt
	}
	return append(append(code, msg...), "\r\n\x00"...)
}

// TestBootOnceFromCDThenDisk: boot cd --once starts from the CD; the next
// start (a reset that restarts QEMU for the changed setting) from the disk.
// Both carry a boot sector that prints its name on the serial port.
func TestBootOnceFromCDThenDisk(t *testing.T) {
	need(t, "qemu-system-x86_64 on PATH", haveQEMU())
	t.Parallel()
	dir := t.TempDir()

	// The disk: an MBR that says DISKBOOT-OK.
	mbr := make([]byte, 1<<20)
	copy(mbr, bootSector("VMTEST DISKBOOT-OK"))
	mbr[510], mbr[511] = 0x55, 0xaa
	disk := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(disk, mbr, 0o644); err != nil {
		t.Fatal(err)
	}
	// The CD: El Torito, no emulation, with a boot image that says CDBOOT-OK.
	img := make([]byte, 2048)
	copy(img, bootSector("VMTEST CDBOOT-OK"))
	_, err := exec.LookPath("genisoimage")
	need(t, "genisoimage", err == nil)
	root := filepath.Join(dir, "cd")
	os.MkdirAll(root, 0o755)
	if err := os.WriteFile(filepath.Join(root, "boot.img"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	cd := filepath.Join(dir, "boot.iso")
	if out, err := exec.Command("genisoimage", "-quiet", "-o", cd, "-V", "CDBOOT",
		"-b", "boot.img", "-no-emul-boot", "-boot-load-size", "4", root).CombinedOutput(); err != nil {
		t.Fatalf("genisoimage: %v: %s", err, out)
	}
	readableByAll(t, cd)
	readableByAll(t, disk)

	env := GuestEnv(t)
	for _, k := range []string{"KERNEL", "INITRD", "KERNEL_CMDLINE"} {
		delete(env, k)
	}
	env["BOOT_FROM"] = disk
	env["CLOUD_INIT"] = "0"
	env["KEEP_ALIVE_AFTER_VM_STOP"] = "1"
	env["POWER_ON_AT_START"] = "0"
	env["SHUTDOWN_TIMEOUT"] = "1"
	v := Start(t, env)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, code := ctl(v, "health", "--alive"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("vmrunner does not answer")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := status(t, v); st.Power != "off" {
		t.Fatalf("POWER_ON_AT_START=0: power %s", st.Power)
	}
	mustCtl(t, v, "media", "insert", cd)
	mustCtl(t, v, "boot", "cd", "--once")
	if st := status(t, v); st.Boot.Device != "cd" || !st.Boot.Once {
		t.Errorf("boot %+v", st.Boot)
	}
	mustCtl(t, v, "start")
	v.WaitLine(`^VMTEST CDBOOT-OK`, 2*time.Minute)
	if st := status(t, v); st.Boot.Device != "" {
		t.Errorf("boot %+v after the once start, want the default", st.Boot)
	}
	mustCtl(t, v, "reset")
	v.WaitLine(`^VMTEST DISKBOOT-OK`, 2*time.Minute)
	if n := strings.Count(v.Console(), "CDBOOT-OK"); n != 1 {
		t.Errorf("the CD booted %d times, want once", n)
	}
	v.Signal(syscall.SIGTERM)
	// The boot sectors ignore the ACPI button: forced after 1 s.
	if code := v.Wait(time.Minute); code != 3 {
		t.Errorf("exit %d, want 3", code)
	}
}
