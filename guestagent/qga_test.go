package guestagent

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// realAgent starts Debian's qemu-ga on the host listening on a unix socket
// (as it would on the guest's virtio-serial port), so the protocol details
// the fake stands in for (sync marker, sticky EOF, replies' shapes) are
// checked against the real thing. The commands it runs are the test's own.
func realAgent(t *testing.T) *Client {
	t.Helper()
	bin, err := exec.LookPath("qemu-ga")
	if err != nil {
		for _, p := range []string{"/usr/sbin/qemu-ga", "/usr/bin/qemu-ga"} {
			if _, err2 := os.Stat(p); err2 == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		t.Skip("qemu-ga is not installed (package qemu-guest-agent; scripts/test-deps.sh installs it)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "qga.sock")
	cmd := exec.Command(bin, "-m", "unix-listen", "-p", sock, "-t", dir, "-f", filepath.Join(dir, "pid"))
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("qemu-ga log:\n%s", logs.String())
		}
	})
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := New(sock, Options{})
	c.spool = []string{filepath.Join(dir, "missing"), dir} // the fallback is tried too
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRealAgentExec(t *testing.T) {
	c := realAgent(t)
	ctx := ctxT(t, 30*time.Second)
	var out, errb bytes.Buffer
	res, err := c.Exec(ctx, Command{Path: "sh", Args: []string{"-c", "echo out; echo err >&2; exit 7"}, Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 7 || out.String() != "out\n" || errb.String() != "err\n" {
		t.Errorf("exit %d stdout %q stderr %q", res.ExitCode, out.String(), errb.String())
	}
	// Output written in steps arrives in steps (the sticky EOF is cleared),
	// stdin reaches the command, and the spool files are gone.
	w := &signalWriter{want: "one\n", seen: make(chan struct{})}
	release := filepath.Join(t.TempDir(), "go")
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, Command{Path: "sh", Args: []string{"-c", "cat; while [ ! -e \"$0\" ]; do sleep 0.05; done; echo two", release},
			Stdin: []byte("one\n"), Stdout: w})
		done <- err
	}()
	select {
	case <-w.seen:
	case err := <-done:
		t.Fatalf("command ended before its first output was seen: %v, %q", err, w.buf.String())
	case <-ctx.Done():
		t.Fatal("first output never arrived")
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := w.buf.String(); got != "one\ntwo\n" {
		t.Errorf("stdout %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(c.spool[1], "vmrunner-exec-*")); len(left) > 0 {
		t.Errorf("spool files left: %v", left)
	}
}

func TestRealAgentInfoAndErrors(t *testing.T) {
	c := realAgent(t)
	ctx := ctxT(t, 30*time.Second)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if h, err := c.HostName(ctx); err != nil || h != host {
		t.Errorf("host name %q, %v; want %q", h, err, host)
	}
	if o, err := c.OSInfo(ctx); err != nil || o.ID == "" || o.KernelRelease == "" {
		t.Errorf("osinfo %+v, %v", o, err)
	}
	ifs, err := c.Interfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, i := range ifs {
		for _, a := range i.Addresses {
			found = found || (i.Name == "lo" && a.String() == "127.0.0.1/8")
		}
	}
	if !found {
		t.Errorf("no lo 127.0.0.1/8 in %+v", ifs)
	}
	res, err := c.Exec(ctx, Command{Path: "/nonexistent/program"})
	if err != nil || res.ExitCode != 127 {
		t.Errorf("missing program: exit %d, %v; want 127 from the shell", res.ExitCode, err)
	}
	var ae *AgentError
	if err := c.call(ctx, "guest-no-such-command", nil, nil, 0); !errors.As(err, &ae) || !strings.Contains(ae.Desc, "guest-no-such-command") {
		t.Errorf("unknown command: %v", err)
	}
}
