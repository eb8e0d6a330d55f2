package integration

// The container image as users run it: built from the repository's own
// Dockerfile (offline, by integration/images/build.sh) and run by the real
// Docker daemon with the busybox test guest mounted read-only.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testImage is the tag integration/images/build.sh gives the image.
const testImage = "vmrunner:test"

// containerLabel marks every container these tests start, so a killed
// run's leftovers are removed by the next one.
const containerLabel = "org.vmrunner.test=integration"

// TestDocker builds the image and runs it as the documentation says.
// Everything sits under this one test so that the daemon it may start is
// stopped again when all of them are done.
func TestDocker(t *testing.T) {
	needRoot(t)
	needGuest(t)
	d := startDocker(t)
	d.buildImage(t)

	t.Run("DryRunListensOnAllAddresses", d.testDryRun)
	t.Run("ConfigErrorExits2", d.testConfigError)
	t.Run("RunHealthStop", d.testRunHealthStop)
	t.Run("KillLeavesNoQEMU", d.testKill)
	t.Run("InteractiveConsole", d.testInteractive)
	t.Run("LeastPrivilege", d.testLeastPrivilege)
	t.Run("Redfish", d.testRedfish)
}

// docker is the daemon the tests talk to.
type docker struct {
	started *exec.Cmd // dockerd when this test started it
}

// startDocker finds a running daemon or starts dockerd (root) and stops it
// again when the test ends.
func startDocker(t *testing.T) *docker {
	t.Helper()
	_, err := exec.LookPath("docker")
	need(t, "the docker client (apt-get install docker.io)", err == nil)
	d := &docker{}
	if dockerUp() {
		d.cleanLeftovers(t)
		return d
	}
	_, err = exec.LookPath("dockerd")
	need(t, "dockerd (apt-get install docker.io)", err == nil)
	logDir, err := os.MkdirTemp("", "vmrunner-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(logDir, "dockerd.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dockerd")
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		need(t, "a Docker daemon: starting dockerd: "+err.Error(), false)
	}
	lf.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	d.started = cmd
	t.Cleanup(func() {
		// SIGTERM lets dockerd stop its containerd and remove its socket.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		os.RemoveAll(logDir)
	})
	deadline := time.Now().Add(60 * time.Second)
	for !dockerUp() {
		select {
		case err := <-exited:
			exited <- err
			log, _ := os.ReadFile(logPath)
			need(t, fmt.Sprintf("a Docker daemon: dockerd exited (%v):\n%s", err, tail(string(log), 20)), false)
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			need(t, "a Docker daemon: dockerd did not answer within 60s:\n"+tail(string(log), 20), false)
		}
	}
	t.Logf("started dockerd (pid %d) for these tests; it is stopped when they end", cmd.Process.Pid)
	return d
}

func dockerUp() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "docker", "info").Run() == nil
}

// cleanLeftovers removes containers a killed earlier run left.
func (d *docker) cleanLeftovers(t *testing.T) {
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+containerLabel).Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		_ = exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
	}
}

// buildImage runs integration/images/build.sh: base images made locally,
// then the unchanged Dockerfile with --build-arg.
func (d *docker) buildImage(t *testing.T) {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(filepath.Join(repoRoot, "integration", "images", "build.sh"), testImage)
	cmd.Env = append(os.Environ(), "PATH=/usr/local/go/bin:"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("integration/images/build.sh: %v\n%s", err, out)
	}
	t.Logf("image built in %s:\n%s", time.Since(start).Round(time.Second), strings.TrimSpace(string(out)))
	size, _ := exec.Command("docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}", testImage).Output()
	t.Logf("MEASURE image size: %s", strings.TrimSpace(string(size)))
}

// --- one container --------------------------------------------------------

// container is one `docker run -d`; its logs are followed as they come:
// stdout is the guest's serial console, stderr the supervisor's log.
type container struct {
	t      *testing.T
	Name   string
	start  time.Time
	logs   *exec.Cmd
	mu     sync.Mutex
	lines  []stamped // stdout lines
	errs   []string  // stderr lines
	change chan struct{}
	done   chan struct{} // docker logs -f ended
}

type stamped struct {
	at   time.Time
	text string
}

func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// guestArgs are the docker run flags that boot the busybox test guest.
func guestArgs(extraCmdline string) []string {
	cmdline := "console=ttyS0 quiet"
	if extraCmdline != "" {
		cmdline += " " + extraCmdline
	}
	return []string{
		"-v", guestDir + ":/guest:ro",
		"-e", "KERNEL=/guest/vmlinuz",
		"-e", "INITRD=/guest/initrd.gz",
		"-e", "KERNEL_CMDLINE=" + cmdline,
		"-e", "ACCEL=tcg",
		"-e", "BOOT_MODE=legacy",
		"-e", "MEMORY=512",
		"-e", "CPUS=1",
	}
}

// run starts `docker run -d` with args (flags, then the image and its
// arguments) and follows its logs.
func (d *docker) run(t *testing.T, name string, args ...string) *container {
	t.Helper()
	c := &container{t: t, Name: name, change: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("container %s stderr (supervisor log):\n%s", name, tail(strings.Join(c.Stderr(), "\n"), 60))
			t.Logf("container %s stdout (serial console):\n%s", name, tail(c.Console(), 60))
		}
		_ = exec.Command("docker", "rm", "-f", "-v", name).Run()
		if c.logs != nil && c.logs.Process != nil {
			_ = c.logs.Process.Kill()
			<-c.done
		}
	})
	c.start = time.Now()
	argv := append([]string{"run", "-d", "--name", name, "--label", containerLabel}, args...)
	out, err := exec.Command("docker", argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	c.follow()
	return c
}

func (c *container) follow() {
	c.logs = exec.Command("docker", "logs", "-f", c.Name)
	stdout, err := c.logs.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	stderr, err := c.logs.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.logs.Start(); err != nil {
		c.t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	read := func(r io.Reader, console bool) {
		defer wg.Done()
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			now := time.Now()
			if line != "" {
				c.mu.Lock()
				text := strings.TrimRight(line, "\r\n")
				if console {
					c.lines = append(c.lines, stamped{now, text})
				} else {
					c.errs = append(c.errs, text)
				}
				close(c.change)
				c.change = make(chan struct{})
				c.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}
	go read(stdout, true)
	go read(stderr, false)
	go func() {
		wg.Wait()
		_ = c.logs.Wait()
		close(c.done)
	}()
}

func (c *container) Console() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, l := range c.lines {
		b.WriteString(l.text + "\n")
	}
	return b.String()
}

func (c *container) Stderr() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

// waitFor waits until match accepts a console (or, with log, a supervisor
// log) line and returns that line with the time it arrived.
func (c *container) waitFor(what string, log bool, match func(string) bool, timeout time.Duration) stamped {
	c.t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		c.mu.Lock()
		var src []stamped
		if log {
			for _, e := range c.errs {
				src = append(src, stamped{text: e})
			}
		} else {
			src = c.lines
		}
		for ; seen < len(src); seen++ {
			if match(src[seen].text) {
				l := src[seen]
				c.mu.Unlock()
				return l
			}
		}
		ch := c.change
		c.mu.Unlock()
		select {
		case <-ch:
		case <-c.done:
			// The container ended and every line is in: one last look.
			c.mu.Lock()
			n := len(c.lines)
			if log {
				n = len(c.errs)
			}
			c.mu.Unlock()
			if seen < n {
				continue
			}
			c.t.Fatalf("container %s ended (%s) before %s", c.Name, c.state(), what)
		case <-deadline:
			c.t.Fatalf("no %s within %s (container %s)", what, timeout, c.state())
		}
	}
}

// WaitLine waits for a console line matching re.
func (c *container) WaitLine(re string, timeout time.Duration) stamped {
	c.t.Helper()
	rx := regexp.MustCompile(re)
	return c.waitFor(fmt.Sprintf("console line matching %q", re), false, rx.MatchString, timeout)
}

// WaitLog waits for a supervisor log line containing s.
func (c *container) WaitLog(s string, timeout time.Duration) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("log line containing %q", s), true, func(l string) bool { return strings.Contains(l, s) }, timeout)
}

func (c *container) inspect(format string) string {
	out, err := exec.Command("docker", "inspect", "-f", format, c.Name).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func (c *container) state() string {
	return c.inspect("{{.State.Status}} exit={{.State.ExitCode}} health={{if .State.Health}}{{.State.Health.Status}}{{end}}")
}

// Wait waits for the container to end and returns its exit code.
func (c *container) Wait(timeout time.Duration) int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "wait", c.Name).Output()
	if err != nil {
		c.t.Fatalf("docker wait %s: %v (%s)", c.Name, err, c.state())
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		c.t.Fatalf("docker wait %s: %q", c.Name, out)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("docker logs -f %s did not end after the container did", c.Name)
	}
	return code
}

// qemuPIDs lists the container's QEMU processes as host PIDs.
func (c *container) qemuPIDs() []int {
	c.t.Helper()
	out, err := exec.Command("docker", "top", c.Name, "-eo", "pid,args").Output()
	if err != nil {
		c.t.Fatalf("docker top %s: %v", c.Name, err)
	}
	var pids []int
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.Contains(f[1], "qemu-system") {
			pid, _ := strconv.Atoi(f[0])
			pids = append(pids, pid)
		}
	}
	return pids
}

// hostProcessesWith lists host processes whose command line contains s.
func hostProcessesWith(s string) []string {
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		if strings.Contains(cmd, s) && !strings.Contains(cmd, "docker") {
			found = append(found, filepath.Base(filepath.Dir(p))+": "+cmd)
		}
	}
	return found
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// dockerOut runs a docker command to completion: its stdout, stderr and
// exit code.
func dockerOut(t *testing.T, timeout time.Duration, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok || ctx.Err() != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// --- the tests ----------------------------------------------------------------

// testDryRun: inside Docker the forwards must listen on every address of
// the container, or `-p` could not reach them.
func (d *docker) testDryRun(t *testing.T) {
	args := append([]string{"run", "--rm", "--label", containerLabel}, guestArgs("")...)
	args = append(args, "-e", "PORT_FWD=8080:80", testImage, "--dry-run")
	out, errOut, code := dockerOut(t, 2*time.Minute, args...)
	if code != 0 {
		t.Fatalf("--dry-run exited %d\n%s", code, errOut)
	}
	for _, want := range []string{"hostfwd=tcp:0.0.0.0:2222-:22", "hostfwd=tcp:0.0.0.0:8080-:80", "-kernel /guest/vmlinuz", "/data/vms/"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	// The image's own contract: entrypoint, no shell, healthcheck, volume.
	out, _, _ = dockerOut(t, time.Minute, "image", "inspect", "-f",
		"{{json .Config.Entrypoint}} {{json .Config.Healthcheck.Test}} {{json .Config.Volumes}} {{.Config.StopSignal}} {{json .Config.ExposedPorts}}", testImage)
	for _, want := range []string{`["vmrunner"]`, `["CMD","vmrunner","health"]`, `"/data":{}`, "SIGTERM", `"2222/tcp"`, `"5900/tcp"`, `"6080/tcp"`, `"8443/tcp"`, `"623/udp"`} {
		if !strings.Contains(out, want) {
			t.Errorf("image config lacks %s: %s", want, out)
		}
	}
}

// testConfigError: a bad variable ends the container with status 2 and a
// message naming it, before anything starts.
func (d *docker) testConfigError(t *testing.T) {
	c := d.run(t, uniqueName("vmrunner-it-badcfg"), append(guestArgs(""), "-e", "MEMORY=lots", testImage)...)
	if code := c.Wait(time.Minute); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	logs := strings.Join(c.Stderr(), "\n")
	if !strings.Contains(logs, "MEMORY") || !strings.Contains(logs, "lots") {
		t.Errorf("docker logs do not name MEMORY=lots:\n%s", logs)
	}
}

// testRunHealthStop is the everyday use: docker run -d -p, the guest's
// service through Docker's port publishing, the health check, JSON logs,
// and docker stop powering the guest off (exit 0).
func (d *docker) testRunHealthStop(t *testing.T) {
	httpPort := FreePort(t)
	name := uniqueName("vmrunner-it-run")
	args := append([]string{"-p", fmt.Sprintf("127.0.0.1:%d:8080", httpPort), "--hostname", "dockvm"},
		guestArgs("")...)
	args = append(args, "-e", "PORT_FWD=8080:80", testImage)
	c := d.run(t, name, args...)

	first := c.WaitLine(`.`, 2*time.Minute)
	t.Logf("MEASURE docker run to the guest's first serial line: %s (%q)", first.at.Sub(c.start).Round(10*time.Millisecond), first.text)
	ready := c.WaitLine(`^VMTEST ready`, 3*time.Minute)
	t.Logf("MEASURE docker run to the test guest's 'VMTEST ready': %s", ready.at.Sub(c.start).Round(10*time.Millisecond))

	body := HTTPGet(t, fmt.Sprintf("http://127.0.0.1:%d/", httpPort), time.Minute)
	if !strings.Contains(body, "vmtest-guest ok") {
		t.Errorf("published port answered %q", body)
	}
	// GUEST_NAME defaults to the container's hostname.
	if !strings.Contains(body, "hostname=dockvm") {
		t.Errorf("guest hostname is not the container's: %q", body)
	}

	// vmrunner is PID 1 and QEMU its child.
	if out, _, code := dockerOut(t, time.Minute, "exec", name, "cat", "/proc/1/cmdline"); code != 0 || strings.TrimRight(out, "\x00") != "vmrunner" {
		t.Errorf("PID 1 is %q (exit %d), want vmrunner", out, code)
	}
	if pids := c.qemuPIDs(); len(pids) != 1 {
		t.Errorf("container runs %d QEMU processes, want 1", len(pids))
	}
	if _, errOut, code := dockerOut(t, time.Minute, "exec", name, "vmrunner", "health"); code != 0 {
		t.Errorf("vmrunner health in the container exited %d: %s", code, errOut)
	}

	// The image's HEALTHCHECK: healthy within an interval or two.
	healthStart := time.Now()
	for c.inspect("{{.State.Health.Status}}") != "healthy" {
		if time.Since(healthStart) > 90*time.Second {
			t.Fatalf("not healthy after 90s: %s", c.inspect("{{json .State.Health}}"))
		}
		time.Sleep(time.Second)
	}
	var health struct {
		Log []struct {
			Start    time.Time
			ExitCode int
		}
	}
	if err := json.Unmarshal([]byte(c.inspect("{{json .State.Health}}")), &health); err == nil && len(health.Log) > 0 {
		started, _ := time.Parse(time.RFC3339Nano, c.inspect("{{.State.StartedAt}}"))
		h := health.Log[0]
		t.Logf("first health check %s after the container started: exit %d", h.Start.Sub(started).Round(10*time.Millisecond), h.ExitCode)
	}

	stopStart := time.Now()
	if out, errOut, code := dockerOut(t, 2*time.Minute, "stop", "-t", "30", name); code != 0 {
		t.Fatalf("docker stop: exit %d: %s %s", code, out, errOut)
	}
	stopTook := time.Since(stopStart)
	t.Logf("MEASURE docker stop with a guest that powers off: %s", stopTook.Round(10*time.Millisecond))
	if code := c.Wait(time.Minute); code != 0 {
		t.Errorf("exit code after docker stop %d, want 0 (guest powered off)", code)
	}
	if stopTook > 20*time.Second {
		t.Errorf("docker stop took %s; the guest powers off within a second or two", stopTook)
	}
	if !strings.Contains(c.Console(), "VMTEST powerbutton") {
		t.Errorf("the guest never saw the power button")
	}
	if c.inspect("{{.State.OOMKilled}}") != "false" {
		t.Errorf("container was OOM-killed")
	}

	// Without a terminal the supervisor logs JSON, one object a line, on
	// stderr; stdout carries only the console.
	logs := c.Stderr()
	if len(logs) == 0 {
		t.Fatal("no supervisor log on stderr")
	}
	for _, l := range logs {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("log line is not JSON: %q", l)
			continue
		}
		if m["level"] == nil || m["msg"] == nil {
			t.Errorf("log line lacks level/msg: %q", l)
		}
	}
	if all := strings.Join(logs, "\n"); !strings.Contains(all, "guest powered off") {
		t.Errorf("log does not say the guest powered off:\n%s", tail(all, 10))
	}
	if strings.Contains(c.Console(), `"level"`) {
		t.Errorf("supervisor log lines on the console (stdout)")
	}
}

// testKill: SIGKILL to PID 1 (docker kill) must not leave QEMU running.
func (d *docker) testKill(t *testing.T) {
	name := uniqueName("vmrunner-it-kill")
	marker := name + "-vm" // QEMU's -name guest=…, to find it on the host
	c := d.run(t, name, append(guestArgs(""), "-e", "GUEST_NAME="+marker, testImage)...)
	c.WaitLine(`^VMTEST init`, 2*time.Minute)
	pids := c.qemuPIDs()
	if len(pids) != 1 {
		t.Fatalf("container runs %d QEMU processes, want 1", len(pids))
	}
	if found := hostProcessesWith(marker); len(found) == 0 {
		t.Fatalf("no host process names %s: the check below would prove nothing", marker)
	}
	if _, errOut, code := dockerOut(t, time.Minute, "kill", name); code != 0 {
		t.Fatalf("docker kill: %s", errOut)
	}
	if code := c.Wait(time.Minute); code != 137 {
		t.Errorf("exit code after docker kill %d, want 137 (SIGKILL)", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		found := hostProcessesWith(marker)
		if len(found) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU outlived the killed container:\n%s", strings.Join(found, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := syscall.Kill(pids[0], 0); err == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pids[0])); bytes.Contains(b, []byte("qemu-system")) {
			t.Errorf("QEMU pid %d still runs", pids[0])
		}
	}
}

// bootsOrEnds waits until the guest starts (true) or the container ends
// (false, with its exit code).
func (c *container) bootsOrEnds(timeout time.Duration) (bool, int) {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		for _, l := range c.lines {
			if strings.HasPrefix(l.text, "VMTEST init") {
				c.mu.Unlock()
				return true, 0
			}
		}
		ch := c.change
		c.mu.Unlock()
		select {
		case <-ch:
		case <-c.done:
			return false, c.Wait(time.Minute)
		case <-deadline:
			c.t.Fatalf("container %s neither booted nor ended within %s (%s)", c.Name, timeout, c.state())
		}
	}
}

// testRedfish: `docker run -p 127.0.0.1:PORT:8443 -e REDFISH_ENABLE=1`
// reaches the BMC through Docker's port publishing: curl without
// credentials gets 401 with a challenge; sushy with them reads the system
// and powers it off, and the container (the BMC) stays up.
func (d *docker) testRedfish(t *testing.T) {
	_, err := os.Stat("/usr/lib/python3/dist-packages/sushy/__init__.py")
	need(t, "python3-sushy", err == nil)
	port := FreePort(t)
	name := uniqueName("vmrunner-it-redfish")
	args := append([]string{"-p", fmt.Sprintf("127.0.0.1:%d:8443", port), "--hostname", "rfvm"}, guestArgs("")...)
	args = append(args, "-e", "REDFISH_ENABLE=1", "-e", "REDFISH_PASSWORD="+redfishPassword, testImage)
	c := d.run(t, name, args...)
	c.WaitLog("redfish listening", 2*time.Minute)
	c.WaitLine(`^VMTEST ready`, 3*time.Minute)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)

	curl := func(args ...string) string {
		out, err := exec.Command("curl", append([]string{"-sk", "--max-time", "30", "--noproxy", "*",
			"-o", "/dev/null", "-D", "-", "-w", "status=%{http_code}\n"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		return string(out)
	}
	if out := curl(base + "/redfish/v1/Systems/rfvm"); !strings.Contains(out, "status=401") || !strings.Contains(strings.ToLower(out), "www-authenticate: basic") {
		t.Errorf("without credentials through the published port:\n%s", out)
	}
	if out := curl("-u", "admin:"+redfishPassword, base+"/redfish/v1/Systems/rfvm"); !strings.Contains(out, "status=200") {
		t.Errorf("with credentials through the published port:\n%s", out)
	}

	script := `import sys, sushy
c = sushy.Sushy(sys.argv[1], username='admin', password=sys.argv[2], verify=False)
s = c.get_system('/redfish/v1/Systems/rfvm')
v = lambda x: str(getattr(x, 'value', x))
print('before', v(s.power_state), s.uuid, s.ethernet_interfaces.get_members()[0].mac_address)
s.reset_system(sushy.RESET_FORCE_OFF)
print('sushy-done')
`
	cmd := exec.Command(python, "-c", script, base, redfishPassword)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "NO_PROXY=*", "no_proxy=*", "PYTHONWARNINGS=ignore"}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "before On ") || !strings.Contains(string(out), "sushy-done") {
		t.Fatalf("sushy through the published port: %v: %s", err, out)
	}
	t.Logf("sushy: %s", strings.TrimSpace(string(out)))
	deadline := time.Now().Add(time.Minute)
	for {
		body, _ := exec.Command("curl", "-sk", "--max-time", "30", "--noproxy", "*", "-u", "admin:"+redfishPassword,
			base+"/redfish/v1/Systems/rfvm").Output()
		if strings.Contains(string(body), `"PowerState":"Off"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PowerState never Off after ForceOff: %s", body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(c.qemuPIDs()) != 0 {
		t.Errorf("QEMU still runs in the container after ForceOff")
	}
	if st := c.inspect("{{.State.Status}}"); st != "running" {
		t.Errorf("the container is %s after ForceOff: the BMC must outlive the VM", st)
	}
	if out := curl("-u", "admin:"+redfishPassword, base+"/redfish/v1/Systems/rfvm"); !strings.Contains(out, "status=200") {
		t.Errorf("the BMC does not answer with the VM off:\n%s", out)
	}
	if out, errOut, code := dockerOut(t, 2*time.Minute, "stop", "-t", "30", name); code != 0 {
		t.Fatalf("docker stop: exit %d: %s %s", code, out, errOut)
	}
	c.Wait(time.Minute)
}
