// Package integration boots real guests under QEMU (TCG) through the built
// vmrunner binary and checks what a user would check.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
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

var (
	binary   string // the vmrunner built for this run
	guestDir string // kernel and initrd of the busybox test guest
	repoRoot string
)

// requireAll turns every missing prerequisite into a failure instead of a
// skip; .ci/run sets it so CI can never pass by skipping.
var requireAll = os.Getenv("VMRUNNER_REQUIRE_INTEGRATION") == "1"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		// -short is the fast unit pass: every test here boots a VM or a
		// container. make test (CI) never passes -short.
		fmt.Println("integration: every test boots a guest; not run under -short")
		return 0
	}
	wd, _ := os.Getwd()
	repoRoot = filepath.Dir(wd)
	tmp, err := os.MkdirTemp("", "vmrunner-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binary = filepath.Join(tmp, "vmrunner")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building vmrunner: %v\n%s", err, out)
		return 1
	}
	guestDir = os.Getenv("VMRUNNER_TEST_GUEST")
	if guestDir == "" {
		guestDir = filepath.Join(repoRoot, ".cache", "guest")
	}
	return m.Run()
}

// need skips (or, under VMRUNNER_REQUIRE_INTEGRATION=1, fails) a test
// whose prerequisites this machine lacks, saying which.
func need(t *testing.T, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	msg := "missing prerequisite: " + what + " (make test installs and builds it)"
	if requireAll {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func haveQEMU() bool {
	_, err := exec.LookPath("qemu-system-x86_64")
	return err == nil
}

func needGuest(t *testing.T) {
	t.Helper()
	need(t, "qemu-system-x86_64 on PATH", haveQEMU())
	_, err := os.Stat(filepath.Join(guestDir, "initrd.gz"))
	need(t, "the test guest in "+guestDir+" (integration/guest/build.sh "+guestDir+")", err == nil)
}

func needRoot(t *testing.T) {
	t.Helper()
	need(t, "root (network namespaces, PID namespaces)", os.Geteuid() == 0)
}

// VM is one running vmrunner process.
type VM struct {
	t       *testing.T
	cmd     *exec.Cmd
	DataDir string
	Name    string
	SSHPort int
	Env     map[string]string

	mu     sync.Mutex
	stdout bytes.Buffer // the serial console
	stderr bytes.Buffer // the supervisor's logs
	lines  []string     // stdout split into lines
	change chan struct{}
	exited chan struct{}
	code   int
}

// GuestEnv is the environment that boots the busybox test guest quickly.
func GuestEnv(t *testing.T) map[string]string {
	return map[string]string{
		"KERNEL": filepath.Join(guestDir, "vmlinuz"),
		"INITRD": filepath.Join(guestDir, "initrd.gz"),
		// no_timer_check: under TCG on a loaded host the kernel's IO-APIC
		// timer check can fail and panic the guest before it prints a line.
		"KERNEL_CMDLINE": "console=ttyS0 quiet no_timer_check",
		"ACCEL":          "tcg",
		"BOOT_MODE":      "legacy",
		"MEMORY":         "512",
		"CPUS":           "1",
		"DATA_DIR":       reachableDataDir(t),
		"GUEST_NAME":     "testvm",
		"SSH_PORT":       fmt.Sprint(FreePort(t)),
		"PORT_FWD_ADDR":  "127.0.0.1",
		"LOG_FORMAT":     "json",
		// Tests read the state folder after the VM ends; a t.TempDir() is
		// no mount point, so it would otherwise be removed then.
		"PERSIST": "1",
	}
}

// Start runs vmrunner with env (nothing inherited but PATH and HOME) and
// optional wrapper argv (e.g. unshare) in front of the binary.
func Start(t *testing.T, env map[string]string, wrapper ...string) *VM {
	t.Helper()
	v := &VM{t: t, DataDir: env["DATA_DIR"], Name: env["GUEST_NAME"], Env: env,
		change: make(chan struct{}), exited: make(chan struct{})}
	fmt.Sscan(env["SSH_PORT"], &v.SSHPort)
	argv := append(append([]string{}, wrapper...), binary)
	v.cmd = exec.Command(argv[0], argv[1:]...)
	v.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, val := range env {
		v.cmd.Env = append(v.cmd.Env, k+"="+val)
	}
	// Its own process group, so a test's signals reach only it. Killed
	// with the test binary: a `go test -timeout` panic runs no cleanups,
	// and vmrunner and its QEMU were left running (QEMU follows vmrunner
	// through its own parent-death signal).
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stderr = &lockedWriter{v: v, buf: &v.stderr}
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go v.readConsole(stdout)
	go func() {
		err := v.cmd.Wait()
		v.mu.Lock()
		v.code = v.cmd.ProcessState.ExitCode()
		if v.code == -1 && err != nil {
			v.code = -1
		}
		v.mu.Unlock()
		close(v.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-v.exited:
		default:
			_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
			<-v.exited
		}
		if t.Failed() {
			t.Logf("vmrunner stderr:\n%s", v.Stderr())
			t.Logf("serial console:\n%s", v.Console())
		}
	})
	return v
}

type lockedWriter struct {
	v   *VM
	buf *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.v.mu.Lock()
	defer w.v.mu.Unlock()
	return w.buf.Write(p)
}

func (v *VM) readConsole(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		v.mu.Lock()
		v.stdout.WriteString(line)
		if line != "" {
			v.lines = append(v.lines, strings.TrimRight(line, "\r\n"))
		}
		close(v.change)
		v.change = make(chan struct{})
		v.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Console is everything the guest printed so far.
func (v *VM) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stdout.String()
}

// Stderr is the supervisor's log so far.
func (v *VM) Stderr() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stderr.String()
}

// WaitLine waits for a console line matching re and returns its submatches.
func (v *VM) WaitLine(re string, timeout time.Duration) []string {
	v.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(timeout)
	seen := 0
	for {
		v.mu.Lock()
		for ; seen < len(v.lines); seen++ {
			if m := rx.FindStringSubmatch(v.lines[seen]); m != nil {
				v.mu.Unlock()
				return m
			}
		}
		ch := v.change
		v.mu.Unlock()
		select {
		case <-ch:
		case <-v.exited:
			v.t.Fatalf("vmrunner exited (status %d) before the console showed %q", v.ExitCode(), re)
		case <-deadline:
			v.t.Fatalf("no console line matching %q within %s", re, timeout)
		}
	}
}

// Signal sends sig to the vmrunner process.
func (v *VM) Signal(sig syscall.Signal) {
	v.t.Helper()
	if err := v.cmd.Process.Signal(sig); err != nil {
		v.t.Fatal(err)
	}
}

// Wait waits for vmrunner to exit and returns its exit status.
func (v *VM) Wait(timeout time.Duration) int {
	v.t.Helper()
	select {
	case <-v.exited:
		return v.ExitCode()
	case <-time.After(timeout):
		v.t.Fatalf("vmrunner still running after %s", timeout)
		return -1
	}
}

// ExitCode is the exit status once exited.
func (v *VM) ExitCode() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.code
}

// StateDir is the VM's state folder.
func (v *VM) StateDir() string { return filepath.Join(v.DataDir, "vms", v.Name) }

// WaitReady waits for the test guest's last boot line.
func (v *VM) WaitReady() {
	v.t.Helper()
	v.WaitLine(`^VMTEST ready`, 3*time.Minute)
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// FreePort returns a TCP port free on loopback right now.
func FreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// HTTPGet fetches url, retrying until timeout: a forward answers only once
// the guest's server runs.
func HTTPGet(t *testing.T, url string, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		body, err := httpGetOnce(ctx, url)
		if err == nil {
			return body
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET %s: no answer within %s: %v", url, timeout, last)
	return ""
}

func httpGetOnce(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", errors.New(resp.Status)
	}
	return string(b), nil
}
