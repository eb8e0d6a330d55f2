package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/guestagent"
)

// vmExec runs `vmrunner exec args…` against v, as a user would, and
// returns its stdout, stderr and exit status.
func vmExec(t *testing.T, v *VM, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"exec"}, args...)...)
	cmd.Env = []string{"DATA_DIR=" + v.DataDir, "GUEST_NAME=" + v.Name, "PATH=" + os.Getenv("PATH")}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("vmrunner exec %q: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// agentExec runs argv in the guest through `vmrunner exec` (the
// controller owns the agent channel) and returns stdout, stderr and the
// exit code; a command that did not run fails the test.
func agentExec(t *testing.T, v *VM, timeout time.Duration, argv ...string) (string, string, int) {
	t.Helper()
	out, errOut, code := vmExec(t, v, append([]string{"--timeout", timeout.String(), "--"}, argv...)...)
	if code >= 124 && code <= 127 && strings.Contains(errOut, "vmrunner exec:") {
		t.Fatalf("exec %q: exit %d: %s (stdout %q)", argv, code, errOut, out)
	}
	return out, errOut, code
}

// waitAgent runs `true` until the agent answers (the guest has booted and
// started qemu-guest-agent).
func waitAgent(t *testing.T, v *VM, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var errOut string
	for time.Now().Before(deadline) {
		select {
		case <-v.exited:
			t.Fatalf("vmrunner exited (status %d) while waiting for the guest agent", v.ExitCode())
		default:
		}
		var code int
		if _, errOut, code = vmExec(t, v, "true"); code == 0 {
			return
		}
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("the guest agent never answered within %s: %s", timeout, errOut)
}

// guestStatus waits for `vmrunner status --json` to carry what the guest
// agent reports.
func guestStatus(t *testing.T, v *VM, timeout time.Duration) *controller.GuestInfo {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		cmd := exec.Command(binary, "status", "--json")
		cmd.Env = []string{"DATA_DIR=" + v.DataDir, "GUEST_NAME=" + v.Name, "PATH=" + os.Getenv("PATH")}
		b, err := cmd.Output()
		var st controller.Status
		if err == nil && json.Unmarshal(b, &st) == nil && st.Guest != nil {
			return st.Guest
		}
	}
	t.Fatalf("vmrunner status never showed the guest within %s", timeout)
	return nil
}

// lockedBuffer collects a stream and tells when it holds want.
type lockedBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	had := strings.Contains(b.buf.String(), b.want)
	b.buf.Write(p)
	if !had && strings.Contains(b.buf.String(), b.want) {
		close(b.seen)
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestGuestAgent boots the Debian 12 cloud guest and works it only through
// its guest agent, as a user does with `vmrunner exec` and `vmrunner
// status`: the socket is the owner's alone, exec keeps stdout, stderr and
// the exit code apart and streams output while the command runs, the
// hostname resolves (sudo is quiet), status shows what the agent reports,
// and a poweroff run through exec ends vmrunner with 0.
func TestGuestAgent(t *testing.T) {
	img := needCloudGuest(t)
	t.Parallel()
	tmp := t.TempDir()
	env := map[string]string{
		"BOOT_FROM":        img,
		"ACCEL":            "tcg",
		"MEMORY":           "1024",
		"CPUS":             "1", // as TestCloudGuest: OVMF under TCG with two once hung
		"DISK_SIZE":        "4G",
		"DATA_DIR":         filepath.Join(tmp, "data"),
		"PERSIST":          "1",
		"GUEST_NAME":       "agentvm",
		"SSH_PORT":         fmt.Sprint(FreePort(t)),
		"PORT_FWD_ADDR":    "127.0.0.1",
		"SHUTDOWN_TIMEOUT": "300",
		"LOG_FORMAT":       "json",
	}
	start := time.Now()
	v := Start(t, env)
	sock := filepath.Join(v.StateDir(), "qga.sock")
	waitAgent(t, v, 20*time.Minute) // a loaded 2-core host took 8 min
	t.Logf("vmrunner start to the agent's first answer: %s", time.Since(start).Round(time.Second))

	// Only the owner can connect: the controller narrows it to 0600 once
	// QEMU runs.
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("qga.sock: %v, %v; want mode 0600", fi, err)
	}

	out, errOut, code := agentExec(t, v, 2*time.Minute, "sh", "-c", "echo out; echo err >&2; exit 7")
	if out != "out\n" || errOut != "err\n" || code != 7 {
		t.Errorf("stdout %q stderr %q exit %d; want \"out\\n\" \"err\\n\" 7", out, errOut, code)
	}

	// Streaming: the command prints, then waits for a file only a second
	// exec (after its first line arrived) creates.
	first := &lockedBuffer{want: "first\n", seen: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		cmd := exec.Command(binary, "exec", "--timeout", "5m",
			"echo first; while [ ! -e /run/vmtest-release ]; do sleep 0.2; done; echo second")
		cmd.Env = []string{"DATA_DIR=" + v.DataDir, "GUEST_NAME=" + v.Name, "PATH=" + os.Getenv("PATH")}
		cmd.Stdout = first
		done <- cmd.Run()
	}()
	select {
	case <-first.seen:
	case err := <-done:
		t.Fatalf("the waiting command ended (%v) with %q", err, first.String())
	case <-time.After(5 * time.Minute):
		t.Fatal("its first line never arrived while the command ran")
	}
	if _, _, code := agentExec(t, v, 2*time.Minute, "touch", "/run/vmtest-release"); code != 0 {
		t.Fatal("touch failed")
	}
	if err := <-done; err != nil || first.String() != "first\nsecond\n" {
		t.Errorf("streamed command: %v, %q", err, first.String())
	}

	// Round trip of `true`, the cost of one exec under TCG.
	var times []time.Duration
	for range 5 {
		t0 := time.Now()
		agentExec(t, v, time.Minute, "true")
		times = append(times, time.Since(t0))
	}
	slices.Sort(times)
	t.Logf("vmrunner exec true round trip: median %s (min %s, max %s, 5 runs, TCG)", times[2].Round(time.Millisecond), times[0].Round(time.Millisecond), times[4].Round(time.Millisecond))

	// A command that runs for minutes (its progress dots stream): the
	// guest's first boot. manage_etc_hosts has run by the time it is done.
	if out, _, code := agentExec(t, v, 20*time.Minute, "cloud-init", "status", "--wait"); code != 0 || !strings.Contains(out, "status: done") {
		t.Errorf("cloud-init status --wait: exit %d: %s", code, out)
	}
	// The hostname resolves: sudo prints nothing.
	if out, errOut, code := agentExec(t, v, time.Minute, "sudo", "true"); code != 0 || out+errOut != "" {
		t.Errorf("sudo true: exit %d, output %q", code, out+errOut)
	}
	if out, _, code := agentExec(t, v, time.Minute, "getent", "hosts", "agentvm"); code != 0 || !strings.Contains(out, "agentvm") {
		t.Errorf("getent hosts agentvm: exit %d %q", code, out)
	}
	// No spool file is left behind.
	if out, _, _ := agentExec(t, v, time.Minute, "sh", "-c", "ls /run /tmp | grep -c vmrunner-exec || true"); strings.TrimSpace(out) != "0" {
		t.Errorf("spool files left in the guest: %q", out)
	}

	g := guestStatus(t, v, 2*time.Minute)
	t.Logf("status: guest %+v", *g)
	if g.HostName != "agentvm" || !strings.Contains(g.OS, "Debian") || !slices.ContainsFunc(g.Addresses, func(a string) bool { return strings.HasSuffix(a, " 10.0.2.15/24") }) {
		t.Errorf("status guest %+v; want agentvm, Debian, QEMU user networking's 10.0.2.15/24", *g)
	}

	// A poweroff through exec: the guest powers itself off, vmrunner
	// exits 0 (exec itself may lose its answer as the VM goes).
	stop := time.Now()
	vmExec(t, v, "--timeout", "1m", "systemctl", "poweroff")
	if code := v.Wait(5 * time.Minute); code != 0 {
		t.Errorf("vmrunner exit status %d after poweroff, want 0", code)
	}
	t.Logf("poweroff to vmrunner exit: %s", time.Since(stop).Round(time.Second))
	if _, err := os.Stat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("qga.sock still there after the VM ended: %v", err)
	}
}

// TestGuestAgentAbsent: the busybox guest has the channel but no agent; a
// call gives a clear error within the sync timeout instead of hanging.
func TestGuestAgentAbsent(t *testing.T) {
	needGuest(t)
	t.Parallel()
	v := Start(t, GuestEnv(t))
	v.WaitReady()
	// The controller owns the channel; a user meets it through exec.
	t0 := time.Now()
	out, stderr, code := vmExec(t, v, "echo", "hi")
	took := time.Since(t0)
	t.Logf("vmrunner exec without agent: exit %d after %s: %s", code, took.Round(time.Millisecond), strings.TrimSpace(stderr))
	if code != 127 || out != "" || !strings.Contains(stderr, "qemu-guest-agent") {
		t.Errorf("vmrunner exec without agent: exit %d, stdout %q, stderr %q; want 127 naming qemu-guest-agent", code, out, stderr)
	}
	if took > guestagent.DefaultSyncTimeout+10*time.Second {
		t.Errorf("vmrunner exec took %s; the sync timeout is %s", took, guestagent.DefaultSyncTimeout)
	}
	v.Signal(syscall.SIGTERM)
	v.Wait(2 * time.Minute)
}

// TestSharedFolders shares a host folder with the Debian 12 cloud guest over
// virtiofs (its cloud kernel has virtiofs but no 9p), QEMU confined to its
// unprivileged user, and checks, through
// the guest agent: cloud-init mounted it at FILESYSTEM_TARGET, a host file
// reads in the guest, a guest write lands on the host as the guest wrote
// it, and symlinks pointing out of the folder (absolute or ..) show the
// guest nothing of the host. Then it measures a sequential read of a
// 256 MiB file over the share and from the guest's own disk.
func TestSharedFolders(t *testing.T) {
	img := needCloudGuest(t)
	_, err := os.Stat("/usr/lib/qemu/virtiofsd")
	need(t, "virtiofsd (qemu-system-common)", err == nil)
	t.Parallel()
	// Folders QEMU's unprivileged user can reach, so vmrunner (root)
	// confines QEMU: virtiofsd runs as root, QEMU as that user connects
	// to its socket. The image is copied out of /root (0700).
	tmp := reachableDataDir(t)
	img = copyFile(t, img, filepath.Join(tmp, filepath.Base(img)))
	share := filepath.Join(tmp, "share")
	secret := filepath.Join(tmp, "secret")
	for _, d := range []string{share, secret} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, content string) {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(share, "hello.txt"), "from the host\n")
	write(filepath.Join(secret, "key"), "host-secret-5f2c\n")
	for name, target := range map[string]string{"abs": secret, "up": "../secret", "etc": "/etc"} {
		if err := os.Symlink(target, filepath.Join(share, name)); err != nil {
			t.Fatal(err)
		}
	}
	big := filepath.Join(share, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("vmrunner shared folder test dat\n"), 1<<15) // 32 B × 32 Ki = 1 MiB
	for range 256 {
		f.Write(chunk)
	}
	f.Close()

	env := map[string]string{
		"BOOT_FROM":         img,
		"ACCEL":             "tcg",
		"MEMORY":            "1024",
		"CPUS":              "1",
		"DISK_SIZE":         "4G",
		"DATA_DIR":          filepath.Join(tmp, "data"),
		"PERSIST":           "1",
		"GUEST_NAME":        "sharevm",
		"SSH_PORT":          fmt.Sprint(FreePort(t)),
		"PORT_FWD_ADDR":     "127.0.0.1",
		"SHUTDOWN_TIMEOUT":  "300",
		"LOG_FORMAT":        "json",
		"FILESYSTEM_SOURCE": share,
		"FILESYSTEM_TARGET": "/srv/host",
		"FILESYSTEM_DRIVER": "virtiofs",
	}
	v := Start(t, env)
	waitAgent(t, v, 15*time.Minute)
	if user := qemuUserLogged(t, v); !strings.Contains(user, "uid ") || strings.Contains(user, "uid 0,") {
		t.Errorf("QEMU runs as %q, want its unprivileged user", user)
	}
	// The agent's port opening is what starts a status round at once.
	if !strings.Contains(v.Stderr(), `"event":"VSERPORT_CHANGE","data":{"id":"qga0port","open":true}`) {
		t.Errorf("no VSERPORT_CHANGE for the agent's port in the log")
	}
	if out, _, code := agentExec(t, v, 20*time.Minute, "cloud-init", "status", "--wait"); code != 0 || !strings.Contains(out, "status: done") {
		t.Errorf("cloud-init status --wait: exit %d: %s", code, out)
	}
	sh := func(script string) (string, string, int) {
		return agentExec(t, v, 5*time.Minute, "sh", "-c", script)
	}
	if out, _, _ := sh("findmnt -n -o SOURCE,FSTYPE /srv/host; grep share1 /etc/fstab"); out != "share1 virtiofs\nshare1 /srv/host virtiofs nofail 0 0\n" {
		t.Errorf("mount and fstab:\n%s", out)
	}
	if out, _, code := sh("cat /srv/host/hello.txt"); code != 0 || out != "from the host\n" {
		t.Errorf("host file in the guest: exit %d %q", code, out)
	}
	if _, errOut, code := sh("echo from the guest > /srv/host/guest.txt && sync"); code != 0 {
		t.Errorf("guest write: exit %d %s", code, errOut)
	}
	if got, err := os.ReadFile(filepath.Join(share, "guest.txt")); err != nil || string(got) != "from the guest\n" {
		t.Errorf("guest's file on the host: %q, %v", got, err)
	}
	out, errOut, _ := sh("cat /srv/host/abs/key /srv/host/up/key /srv/host/../secret/key; cat /srv/host/etc/hostname; ln -s / /srv/host/root-link && cat /srv/host/root-link" + secret + "/key")
	host, _ := os.Hostname()
	if strings.Contains(out+errOut, "host-secret") || slices.Contains(strings.Split(out, "\n"), host) || !strings.Contains(out, "sharevm") {
		t.Errorf("a symlink out of the share reached the host's files (or not the guest's own /etc):\n%s%s", out, errOut)
	}
	t.Logf("escape attempts in the guest:\n%s%s", out, errOut)

	// Sequential read, 256 MiB, page cache dropped first: the share, then
	// the same bytes from the guest's disk.
	read := func(path string) string {
		_, errOut, code := sh("sync; echo 3 > /proc/sys/vm/drop_caches; dd if=" + path + " of=/dev/null bs=1M 2>&1 >/dev/null | tail -n1 >&2")
		if code != 0 {
			t.Errorf("dd %s: exit %d %s", path, code, errOut)
		}
		return strings.TrimSpace(errOut)
	}
	viaShare := read("/srv/host/big")
	if _, errOut, code := sh("cp /srv/host/big /var/tmp/big"); code != 0 {
		t.Fatalf("copy to the guest disk: %s", errOut)
	}
	viaDisk := read("/var/tmp/big")
	t.Logf("sequential read of 256 MiB under TCG: virtiofs: %s | guest disk (virtio-blk, qcow2): %s", viaShare, viaDisk)

	v.Signal(syscall.SIGTERM)
	if code := v.Wait(6 * time.Minute); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	if left, _ := filepath.Glob(filepath.Join(v.StateDir(), "virtiofs-*.sock")); len(left) > 0 {
		t.Errorf("virtiofsd sockets left: %v", left)
	}
}
