package integration

import (
	"bytes"
	"context"
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

// agentExec runs argv in the guest through the agent and returns stdout,
// stderr and the exit code; a failed call fails the test.
func agentExec(t *testing.T, c *guestagent.Client, timeout time.Duration, argv ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out, errb bytes.Buffer
	res, err := c.Exec(ctx, guestagent.Command{Path: argv[0], Args: argv[1:], Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("exec %q: %v (stdout %q, stderr %q)", argv, err, out.String(), errb.String())
	}
	return out.String(), errb.String(), res.ExitCode
}

// waitAgent pings the agent until it answers (the guest has booted and
// started qemu-guest-agent).
func waitAgent(t *testing.T, v *VM, c *guestagent.Client, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-v.exited:
			t.Fatalf("vmrunner exited (status %d) while waiting for the guest agent", v.ExitCode())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = c.Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("the guest agent never answered within %s: %v", timeout, err)
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
// the guest agent on STATE/qga.sock: the socket is the owner's alone,
// exec keeps stdout, stderr and the exit code apart and streams output
// while the command runs, the hostname resolves (sudo is quiet), the info
// commands answer, and guest-shutdown powers the guest off (vmrunner
// exits 0).
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
	c := guestagent.New(sock, guestagent.Options{})
	defer c.Close()
	waitAgent(t, v, c, 20*time.Minute) // a loaded 2-core host took 8 min
	t.Logf("vmrunner start to the agent's first answer: %s", time.Since(start).Round(time.Second))

	// Only the owner can connect: QEMU made the socket with vmrunner's
	// umask; Restrict (the controller's job once QEMU runs) makes it 0600.
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("qga.sock as QEMU made it: %v", fi.Mode())
	if fi.Mode().Perm()&0o022 != 0 {
		t.Errorf("qga.sock mode %v lets others connect", fi.Mode())
	}
	if err := guestagent.Restrict(sock); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(sock); fi.Mode().Perm() != 0o600 {
		t.Errorf("qga.sock mode %v after Restrict, want 0600", fi.Mode().Perm())
	}

	out, errOut, code := agentExec(t, c, 2*time.Minute, "sh", "-c", "echo out; echo err >&2; exit 7")
	if out != "out\n" || errOut != "err\n" || code != 7 {
		t.Errorf("stdout %q stderr %q exit %d; want \"out\\n\" \"err\\n\" 7", out, errOut, code)
	}

	// Streaming: the command prints, then waits for a file only a second
	// exec (after its first line arrived) creates.
	first := &lockedBuffer{want: "first\n", seen: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_, err := c.Exec(ctx, guestagent.Command{Path: "sh", Args: []string{"-c",
			"echo first; while [ ! -e /run/vmtest-release ]; do sleep 0.2; done; echo second"}, Stdout: first})
		done <- err
	}()
	select {
	case <-first.seen:
	case err := <-done:
		t.Fatalf("the waiting command ended (%v) with %q", err, first.String())
	case <-time.After(5 * time.Minute):
		t.Fatal("its first line never arrived while the command ran")
	}
	if _, _, code := agentExec(t, c, 2*time.Minute, "touch", "/run/vmtest-release"); code != 0 {
		t.Fatal("touch failed")
	}
	if err := <-done; err != nil || first.String() != "first\nsecond\n" {
		t.Errorf("streamed command: %v, %q", err, first.String())
	}

	// Round trip of `true`, the cost of one exec under TCG.
	var times []time.Duration
	for range 5 {
		t0 := time.Now()
		agentExec(t, c, time.Minute, "true")
		times = append(times, time.Since(t0))
	}
	slices.Sort(times)
	t.Logf("exec true round trip: median %s (min %s, max %s, 5 runs, TCG)", times[2].Round(time.Millisecond), times[0].Round(time.Millisecond), times[4].Round(time.Millisecond))

	// A command that runs for minutes (its progress dots stream): the
	// guest's first boot. manage_etc_hosts has run by the time it is done.
	if out, _, code := agentExec(t, c, 20*time.Minute, "cloud-init", "status", "--wait"); code != 0 || !strings.Contains(out, "status: done") {
		t.Errorf("cloud-init status --wait: exit %d: %s", code, out)
	}
	// The hostname resolves: sudo prints nothing.
	if out, errOut, code := agentExec(t, c, time.Minute, "sudo", "true"); code != 0 || out+errOut != "" {
		t.Errorf("sudo true: exit %d, output %q", code, out+errOut)
	}
	if out, _, code := agentExec(t, c, time.Minute, "getent", "hosts", "agentvm"); code != 0 || !strings.Contains(out, "agentvm") {
		t.Errorf("getent hosts agentvm: exit %d %q", code, out)
	}
	// No spool file is left behind.
	if out, _, _ := agentExec(t, c, time.Minute, "sh", "-c", "ls /run /tmp | grep -c vmrunner-exec || true"); strings.TrimSpace(out) != "0" {
		t.Errorf("spool files left in the guest: %q", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if h, err := c.HostName(ctx); err != nil || h != "agentvm" {
		t.Errorf("host name %q, %v", h, err)
	}
	if o, err := c.OSInfo(ctx); err != nil || o.ID != "debian" || o.VersionID != "12" {
		t.Errorf("OS info %+v, %v", o, err)
	}
	ifs, err := c.Interfaces(ctx)
	var addrs []string
	for _, i := range ifs {
		for _, a := range i.Addresses {
			addrs = append(addrs, a.String())
		}
	}
	if err != nil || !slices.Contains(addrs, "10.0.2.15/24") {
		t.Errorf("addresses %q, %v; want QEMU user networking's 10.0.2.15/24", addrs, err)
	}

	// guest-shutdown: the guest powers itself off, vmrunner exits 0.
	stop := time.Now()
	if err := c.Shutdown(ctx, guestagent.PowerDown); err != nil {
		t.Fatal(err)
	}
	if code := v.Wait(5 * time.Minute); code != 0 {
		t.Errorf("vmrunner exit status %d after guest-shutdown, want 0", code)
	}
	t.Logf("guest-shutdown to vmrunner exit: %s", time.Since(stop).Round(time.Second))
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
	c := guestagent.New(filepath.Join(v.StateDir(), "qga.sock"), guestagent.Options{})
	defer c.Close()
	t0 := time.Now()
	_, err := c.Exec(context.Background(), guestagent.Command{Path: "true"})
	took := time.Since(t0)
	if !errors.Is(err, guestagent.ErrNoAgent) || !strings.Contains(err.Error(), "qemu-guest-agent") {
		t.Errorf("exec without agent: %v; want ErrNoAgent naming qemu-guest-agent", err)
	}
	t.Logf("exec without agent failed after %s: %v", took.Round(time.Millisecond), err)
	if took > guestagent.DefaultSyncTimeout+10*time.Second {
		t.Errorf("took %s; the sync timeout is %s", took, guestagent.DefaultSyncTimeout)
	}
	// The same through the controller, as a user meets it.
	t0 = time.Now()
	out, stderr, code := vmExec(t, v, "echo", "hi")
	took = time.Since(t0)
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
// virtiofs (its cloud kernel has virtiofs but no 9p) and checks, through
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
	tmp := t.TempDir()
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
	c := guestagent.New(filepath.Join(v.StateDir(), "qga.sock"), guestagent.Options{})
	defer c.Close()
	waitAgent(t, v, c, 15*time.Minute)
	if out, _, code := agentExec(t, c, 20*time.Minute, "cloud-init", "status", "--wait"); code != 0 || !strings.Contains(out, "status: done") {
		t.Errorf("cloud-init status --wait: exit %d: %s", code, out)
	}
	sh := func(script string) (string, string, int) {
		return agentExec(t, c, 5*time.Minute, "sh", "-c", script)
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
	if strings.Contains(out+errOut, "host-secret") || strings.Contains(out, host) || !strings.Contains(out, "sharevm") {
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
