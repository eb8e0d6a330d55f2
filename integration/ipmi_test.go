package integration

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const ipmiPassword = "wire-ipmi-secret-1"

// freeUDPPort returns a UDP port free on loopback right now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestIPMIPower drives the wired BMC with ipmitool -I lanplus: the guest
// is powered off (the BMC stays up) and on again, power status follows,
// and a wrong password is refused.
func TestIPMIPower(t *testing.T) {
	t.Parallel()
	needGuest(t)
	_, err := exec.LookPath("ipmitool")
	need(t, "ipmitool", err == nil)
	port := freeUDPPort(t)
	env := GuestEnv(t)
	env["IPMI_ENABLE"] = "1"
	env["IPMI_LISTEN"] = "127.0.0.1"
	env["IPMI_PORT"] = fmt.Sprint(port)
	env["IPMI_USERNAME"] = "ironic"
	env["IPMI_PASSWORD"] = ipmiPassword
	v := Start(t, env)
	ipmitool := func(pass string, args ...string) (string, error) {
		argv := append([]string{"-I", "lanplus", "-H", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "ironic", "-P", pass}, args...)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ipmitool", argv...).CombinedOutput()
		return string(out), err
	}
	status := func() string {
		out, err := ipmitool(ipmiPassword, "power", "status")
		if err != nil {
			t.Fatalf("power status: %v: %s", err, out)
		}
		return strings.TrimSpace(out)
	}
	waitStatus := func(want string, timeout time.Duration) {
		deadline := time.Now().Add(timeout)
		for status() != want {
			if time.Now().After(deadline) {
				t.Fatalf("power status %q, want %q", status(), want)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	v.WaitReady()
	if got := status(); got != "Chassis Power is on" {
		t.Errorf("power status with the guest up: %q", got)
	}
	if out, err := ipmitool("wrong-password-xx", "power", "off"); err == nil {
		t.Errorf("a wrong password powered the VM off: %s", out)
	}

	if out, err := ipmitool(ipmiPassword, "power", "off"); err != nil {
		t.Fatalf("power off: %v: %s", err, out)
	}
	waitStatus("Chassis Power is off", time.Minute)
	select {
	case <-v.exited:
		t.Fatalf("vmrunner ended with the VM (status %d): the BMC must stay", v.ExitCode())
	case <-time.After(2 * time.Second):
	}
	if out, err := ipmitool(ipmiPassword, "power", "on"); err != nil {
		t.Fatalf("power on: %v: %s", err, out)
	}
	waitCount(t, v, `^VMTEST ready`, 2, 5*time.Minute)
	if got := status(); got != "Chassis Power is on" {
		t.Errorf("power status after power on: %q", got)
	}
	if out, err := ipmitool(ipmiPassword, "mc", "guid"); err != nil || !strings.Contains(out, "System GUID") {
		t.Errorf("mc guid: %v: %s", err, out)
	}
	logs := v.Stderr()
	if strings.Contains(logs, ipmiPassword) || strings.Contains(logs, "wrong-password-xx") {
		t.Errorf("a password is in vmrunner's log")
	}
	for _, want := range []string{`"ipmi session opened"`, `"ipmi login refused"`, `"chassis control"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(2 * time.Minute); code != 0 {
		t.Errorf("vmrunner exit %d after SIGTERM", code)
	}
}
