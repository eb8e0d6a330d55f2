package integration

// The smallest `docker run` flags per network mode (docs/container.md),
// and the interactive serial console of `docker run -it`.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func (d *docker) testLeastPrivilege(t *testing.T) {
	t.Run("nat", d.testNATUnprivileged)
	// bridge and direct need a Linux bridge or a parent NIC in the
	// container's network namespace. A holder container owns a namespace
	// the test furnishes from the host (nsenter), and the VM's container
	// joins it with --network container:HOLDER: the same flags as with
	// --network host on a real host, without touching the host's network.
	holder := d.netnsHolder(t)
	t.Run("bridge", func(t *testing.T) { d.testBridge(t, holder) })
	t.Run("direct", func(t *testing.T) { d.testDirect(t, holder) })
	t.Run("NetworkingGuideLines", func(t *testing.T) { d.testGuideLines(t, holder) })
}

// testGuideLines: the networking guide's three docker run lines, with this
// image's name, are accepted (as --dry-run, with the test guest as boot
// source; --network host becomes the holder's namespace, which has the
// guide's br0 and eth1, and -it is left out for want of a terminal).
func (d *docker) testGuideLines(t *testing.T, h holder) {
	boot := append(guestArgs(""), "-e", "ACCEL=auto")
	lines := []struct {
		name  string
		flags []string
		want  string
	}{
		{"nat", []string{"--device", "/dev/kvm:/dev/kvm", "-p", fmt.Sprintf("127.0.0.1:%d:2222", FreePort(t))}, "hostfwd=tcp:0.0.0.0:2222-:22"},
		{"bridge", []string{"--device", "/dev/kvm:/dev/kvm", "--privileged", "--network", "container:" + h.Name,
			"-e", "NETWORK_MODE=bridge", "-e", "NETWORK_BRIDGE=br0"}, "tap,"},
		{"direct", []string{"--device", "/dev/kvm:/dev/kvm", "--privileged", "--network", "container:" + h.Name,
			"-v", "/dev:/dev", "-e", "NETWORK_MODE=direct", "-e", "NETWORK_DIRECT_DEV=eth1"}, "tap,"},
	}
	_, kvmErr := os.Stat("/dev/kvm")
	for _, l := range lines {
		if kvmErr != nil {
			// Docker refuses --device for a device the host lacks.
			l.flags = l.flags[2:]
			t.Logf("%s line: no /dev/kvm on this host, so without --device /dev/kvm:/dev/kvm", l.name)
		}
		args := append(append([]string{"run", "--rm", "--label", containerLabel}, l.flags...), boot...)
		args = append(args, testImage, "--dry-run")
		out, errOut, code := dockerOut(t, 2*time.Minute, args...)
		if code == 125 && strings.Contains(errOut, "unable to apply caps") {
			// Some hosts (these test machines) lack a capability in their
			// own bounding set, so runc cannot grant "all" of them.
			t.Logf("%s line: this host cannot start --privileged containers (%s); the least-privilege flags are tested above",
				l.name, strings.TrimSpace(errOut))
			continue
		}
		if code != 0 {
			t.Errorf("%s line: exit %d\n%s", l.name, code, errOut)
			continue
		}
		if !strings.Contains(out, l.want) {
			t.Errorf("%s line: the QEMU command lacks %q:\n%s", l.name, l.want, out)
		}
	}
}

// testNATUnprivileged: nat needs no capability at all (and only
// --device /dev/kvm on a host where KVM runs guests; tests use TCG).
func (d *docker) testNATUnprivileged(t *testing.T) {
	httpPort := FreePort(t)
	// A read-only root file system still needs a writable /tmp: the
	// cloud-init seed's ISO is staged in a temporary directory.
	args := []string{"--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"--read-only", "--tmpfs", "/tmp:size=64m",
		"-p", fmt.Sprintf("127.0.0.1:%d:8080", httpPort)}
	args = append(args, guestArgs("")...)
	args = append(args, "-e", "PORT_FWD=8080:80", testImage)
	c := d.run(t, uniqueName("vmrunner-it-nocaps"), args...)
	c.WaitLine(`^VMTEST ready`, 3*time.Minute)
	if body := HTTPGet(t, fmt.Sprintf("http://127.0.0.1:%d/", httpPort), time.Minute); !strings.Contains(body, "vmtest-guest ok") {
		t.Errorf("published port answered %q", body)
	}
	if _, errOut, code := dockerOut(t, 2*time.Minute, "stop", "-t", "30", c.Name); code != 0 {
		t.Fatalf("docker stop: %s", errOut)
	}
	if code := c.Wait(time.Minute); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// holder is a container that only owns a network namespace: a bridge br0
// and a veth pair (vmr0 carries the macvtaps of direct mode).
type holder struct {
	Name string
	PID  int
}

func (d *docker) netnsHolder(t *testing.T) holder {
	t.Helper()
	_, err := exec.LookPath("nsenter")
	need(t, "nsenter (util-linux)", err == nil)
	_, err = exec.LookPath("ip")
	need(t, "ip (iproute2)", err == nil)
	name := uniqueName("vmrunner-it-netns")
	_, errOut, code := dockerOut(t, time.Minute, "run", "-d", "--name", name, "--label", containerLabel,
		"--network", "none", "--entrypoint", "sleep", testImage, "infinity")
	if code != 0 {
		t.Fatalf("starting the namespace holder: %s", errOut)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	out, _, _ := dockerOut(t, time.Minute, "inspect", "-f", "{{.State.Pid}}", name)
	var pid int
	if _, err := fmt.Sscan(out, &pid); err != nil || pid <= 0 {
		t.Fatalf("holder pid %q", out)
	}
	h := holder{Name: name, PID: pid}
	h.ip(t, "link", "add", "br0", "type", "bridge")
	h.ip(t, "link", "set", "br0", "up")
	h.ip(t, "link", "add", "vmr0", "type", "veth", "peer", "name", "vmr1")
	h.ip(t, "link", "set", "vmr0", "up")
	h.ip(t, "link", "set", "vmr1", "up")
	h.ip(t, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p") // the guide's NIC
	h.ip(t, "link", "set", "eth1", "up")
	return h
}

// ip runs ip(8) in the holder's network namespace.
func (h holder) ip(t *testing.T, args ...string) string {
	t.Helper()
	argv := append([]string{"-t", fmt.Sprint(h.PID), "-n", "ip"}, args...)
	out, err := exec.Command("nsenter", argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// vmArgs are the flags of a VM container in the holder's namespace.
// Nothing serves DHCP there: the guest tries once and moves on.
func (h holder) vmArgs(flags ...string) []string {
	return append(append([]string{"--network", "container:" + h.Name}, flags...),
		guestArgs("vmtest.dhcp_tries=1 vmtest.slaac_wait=1")...)
}

// refused runs a container that must end with status 2 before booting,
// and returns its log.
func (d *docker) refused(t *testing.T, args ...string) string {
	t.Helper()
	c := d.run(t, uniqueName("vmrunner-it-refused"), args...)
	code := c.Wait(time.Minute)
	logs := strings.Join(c.Stderr(), "\n")
	if code != 2 {
		t.Fatalf("exit code %d, want 2 (configuration error)\n%s", code, logs)
	}
	if c.Console() != "" {
		t.Errorf("the guest printed something, so QEMU ran:\n%s", c.Console())
	}
	t.Logf("refused as expected:\n%s", logs)
	return logs
}

// boots runs a container that must boot the guest and power it off on
// docker stop; during the run, check looks at the namespace.
func (d *docker) boots(t *testing.T, check func(*container), args ...string) {
	t.Helper()
	c := d.run(t, uniqueName("vmrunner-it-net"), args...)
	c.WaitLine(`^VMTEST ready`, 3*time.Minute)
	if check != nil {
		check(c)
	}
	if _, errOut, code := dockerOut(t, 2*time.Minute, "stop", "-t", "30", c.Name); code != 0 {
		t.Fatalf("docker stop: %s", errOut)
	}
	if code := c.Wait(time.Minute); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func (d *docker) testBridge(t *testing.T, h holder) {
	env := []string{"-e", "NETWORK_MODE=bridge", "-e", "NETWORK_BRIDGE=br0", testImage}

	// Without CAP_NET_ADMIN the tap cannot be made: refused, naming the
	// capability's flag (--privileged only as the blunt alternative).
	logs := d.refused(t, append(h.vmArgs("--device", "/dev/net/tun"), env...)...)
	if !strings.Contains(logs, "--cap-add NET_ADMIN") {
		t.Errorf("the refusal does not name --cap-add NET_ADMIN:\n%s", logs)
	}

	// Without /dev/net/tun and without CAP_MKNOD to make it: refused,
	// naming --device /dev/net/tun.
	logs = d.refused(t, append(h.vmArgs("--cap-drop", "MKNOD", "--cap-add", "NET_ADMIN"), env...)...)
	if !strings.Contains(logs, "--device /dev/net/tun") {
		t.Errorf("the refusal does not name --device /dev/net/tun:\n%s", logs)
	}

	// With exactly NET_ADMIN it runs, its tap on br0: vmrunner makes
	// /dev/net/tun (CAP_MKNOD is in Docker's default set, and Docker's
	// device cgroup allows the tun device).
	d.boots(t, func(c *container) {
		ports := h.ip(t, "-o", "link", "show", "master", "br0")
		if !strings.Contains(ports, "vmrunner") {
			t.Errorf("no vmrunner tap on br0:\n%s", ports)
		}
		out, _, code := dockerOut(t, time.Minute, "exec", c.Name, "stat", "-c", "%F %t:%T %a", "/dev/net/tun")
		if want := "character special file a:c8 666"; code != 0 || strings.TrimSpace(out) != want {
			t.Errorf("/dev/net/tun in the container: %q (exit %d); want %q", out, code, want)
		}
	}, append(h.vmArgs("--cap-add", "NET_ADMIN"), env...)...)
	if ports := h.ip(t, "-o", "link", "show", "master", "br0"); strings.TrimSpace(ports) != "" {
		t.Errorf("links left on br0 after the VM stopped:\n%s", ports)
	}
}

func (d *docker) testDirect(t *testing.T, h holder) {
	env := []string{"-e", "NETWORK_MODE=direct", "-e", "NETWORK_DIRECT_DEV=vmr0", testImage}
	major := macvtapMajor(t)
	rule := "c " + major + ":* rwm"

	// Without CAP_NET_ADMIN the macvtap cannot be made: refused, naming
	// the capability's flag.
	logs := d.refused(t, append(h.vmArgs(), env...)...)
	if !strings.Contains(logs, "--cap-add NET_ADMIN") {
		t.Errorf("the refusal does not name --cap-add NET_ADMIN:\n%s", logs)
	}

	// The macvtap's character device (/dev/tapN, major dynamic) is not in
	// Docker's device cgroup: without a rule for it, refused, naming the
	// rule with this host's major. The host's /dev does not help.
	for _, flags := range [][]string{{"--cap-add", "NET_ADMIN"}, {"--cap-add", "NET_ADMIN", "-v", "/dev:/dev"}} {
		logs = d.refused(t, append(h.vmArgs(flags...), env...)...)
		for _, want := range []string{`NETWORK_MODE="direct"`, "operation not permitted", "--device-cgroup-rule '" + rule + "'"} {
			if !strings.Contains(logs, want) {
				t.Errorf("with %s, the refusal lacks %q:\n%s", strings.Join(flags, " "), want, logs)
			}
		}
	}

	// With the host's /dev, a private node for the macvtap is made and
	// deleted in it: none may stay.
	if left, _ := filepath.Glob("/dev/vmrunner-*"); len(left) > 0 {
		t.Errorf("device nodes left in the host's /dev: %q", left)
	}

	// NET_ADMIN and that rule are all it takes: no --privileged, no -v /dev:/dev.
	d.boots(t, func(c *container) {
		links := h.ip(t, "-o", "link", "show", "type", "macvtap")
		if !strings.Contains(links, "@vmr0") {
			t.Errorf("no macvtap on vmr0:\n%s", links)
		}
	}, append(h.vmArgs("--cap-add", "NET_ADMIN", "--device-cgroup-rule", rule), env...)...)
	if links := h.ip(t, "-o", "link", "show", "type", "macvtap"); strings.TrimSpace(links) != "" {
		t.Errorf("macvtap left after the VM stopped:\n%s", links)
	}
}

// macvtapMajor is the character device major of macvtap on this host.
func macvtapMajor(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/devices")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(\d+) macvtap$`).FindSubmatch(b)
	need(t, "the macvtap driver loaded on the host (/proc/devices lists macvtap)", m != nil)
	return string(m[1])
}

// --- docker run -it ------------------------------------------------------------

// testInteractive: `docker run -it` attaches the serial console both ways
// (a pty from script(1) stands in for the user's terminal), and Ctrl-]
// powers the guest off.
func (d *docker) testInteractive(t *testing.T) {
	_, err := exec.LookPath("script")
	need(t, "script (util-linux)", err == nil)
	name := uniqueName("vmrunner-it-tty")
	argv := append([]string{"docker", "run", "-it", "--rm", "--name", name, "--label", containerLabel},
		guestArgs("vmtest.shell=1")...)
	argv = append(argv, testImage)
	cmd := exec.Command("script", "-qfec", shellJoin(argv), "/dev/null")
	cmd.Env = append(os.Environ(), "TERM=dumb")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	tty := &ttyOutput{change: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = tty, tty
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = exec.Command("docker", "rm", "-f", name).Run()
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("terminal:\n%s", tail(tty.String(), 60))
		}
	})

	tty.wait(t, "VMTEST ready", 3*time.Minute, exited)
	t.Logf("docker run -it to 'VMTEST ready': %s", time.Since(start).Round(10*time.Millisecond))
	// The guest's shell reads what we type: a result only it computes.
	if _, err := io.WriteString(stdin, "echo tty-$((6*7))\r"); err != nil {
		t.Fatal(err)
	}
	tty.wait(t, "tty-42", 30*time.Second, exited)
	out := tty.String()
	if !strings.Contains(out, "serial console attached") {
		t.Errorf("no 'serial console attached' notice on the terminal")
	}
	if strings.Contains(out, `{"level"`) {
		t.Errorf("JSON log lines on a terminal; want the console format")
	}

	// Ctrl-] is the console's escape: a graceful power-off, exit 0.
	if _, err := stdin.Write([]byte{0x1d}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("docker run -it ended with %v after Ctrl-], want exit 0", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("docker run -it still running 60s after Ctrl-]")
	}
	if !strings.Contains(tty.String(), "VMTEST powerbutton") {
		t.Errorf("the guest never saw the power button")
	}
}

// ttyOutput collects what the pseudo-terminal shows.
type ttyOutput struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	change chan struct{}
}

func (o *ttyOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	close(o.change)
	o.change = make(chan struct{})
	return len(p), nil
}

func (o *ttyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func (o *ttyOutput) wait(t *testing.T, s string, timeout time.Duration, exited chan error) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		o.mu.Lock()
		found := strings.Contains(o.buf.String(), s)
		ch := o.change
		o.mu.Unlock()
		if found {
			return
		}
		select {
		case <-ch:
		case err := <-exited:
			exited <- err
			if !strings.Contains(o.String(), s) {
				t.Fatalf("docker run -it ended (%v) before the terminal showed %q", err, s)
			}
		case <-deadline:
			t.Fatalf("the terminal did not show %q within %s", s, timeout)
		}
	}
}

// shellJoin quotes argv for sh -c.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
