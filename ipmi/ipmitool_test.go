package ipmi

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/controller"
)

const (
	testUser     = "ironic"
	testPassword = "Zq7-long-ipmi-pass"
)

type bmc struct {
	t    testing.TB
	vm   *fakeVM
	port int
	logs *observer.ObservedLogs
	srv  *Server
}

// startBMC serves a BMC over a fake VM on a loopback port; opts change
// its options.
func startBMC(t testing.TB, opts ...func(*Options)) *bmc {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	vm := newFakeVM()
	o := Options{Username: testUser, Password: testPassword, SystemID: "vm1", Version: "v1.4.2", Log: zap.New(core)}
	for _, f := range opts {
		f(&o)
	}
	srv := New(vm, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, conn)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &bmc{t: t, vm: vm, port: conn.LocalAddr().(*net.UDPAddr).Port, logs: logs, srv: srv}
}

func needIPMItool(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ipmitool"); err != nil {
		t.Skip("ipmitool is not installed (scripts/test-deps.sh installs it)")
	}
}

// ipmitool runs ipmitool -I lanplus against the BMC with the given
// credentials and extra options.
func (b *bmc) ipmitool(user, pass string, args ...string) (string, error) {
	b.t.Helper()
	argv := append([]string{"-I", "lanplus", "-H", "127.0.0.1", "-p", fmt.Sprint(b.port), "-U", user, "-P", pass, "-N", "1", "-R", "2"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ipmitool", argv...).CombinedOutput()
	return string(out), err
}

func (b *bmc) ok(args ...string) string {
	b.t.Helper()
	out, err := b.ipmitool(testUser, testPassword, args...)
	if err != nil {
		b.t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestIPMItoolPower(t *testing.T) {
	needIPMItool(t)
	for _, cs := range []string{"17", "3"} {
		t.Run("C"+cs, func(t *testing.T) {
			if cs == "3" && testing.Short() {
				t.Skip("-short: suite 17 only (the Go console of the hostile tests logs in with suite 3)")
			}
			b := startBMC(t)
			opt := []string{"-C", cs}
			run := func(args ...string) string { return b.ok(append(slices.Clone(opt), args...)...) }
			if out := run("power", "status"); !strings.Contains(out, "Chassis Power is on") {
				t.Errorf("power status: %q", out)
			}
			steps := []struct {
				args  []string
				calls []string
				power controller.PowerState
			}{
				{[]string{"power", "off"}, []string{"PowerOff false"}, controller.Off},
				{[]string{"power", "on"}, []string{"PowerOn"}, controller.Running},
				{[]string{"power", "soft"}, []string{"PowerOff true"}, controller.Off},
				{[]string{"power", "cycle"}, []string{"PowerOff false", "PowerOn"}, controller.Running},
				{[]string{"power", "cycle"}, []string{"PowerOff false", "PowerOn"}, controller.Running},
				{[]string{"power", "reset"}, []string{"Reset"}, controller.Running},
				{[]string{"power", "diag"}, []string{"NMI"}, controller.Running},
				{[]string{"power", "on"}, nil, controller.Running}, // already on: nothing to do
			}
			for _, s := range steps {
				b.vm.Calls()
				run(s.args...)
				if got := b.vm.Calls(); !slices.Equal(got, s.calls) {
					t.Errorf("%v: calls %q, want %q", s.args, got, s.calls)
				}
				if p := b.vm.Status().Power; p != s.power {
					t.Errorf("%v: power %s, want %s", s.args, p, s.power)
				}
				want := "Chassis Power is on"
				if s.power == controller.Off {
					want = "Chassis Power is off"
				}
				if out := run("power", "status"); !strings.Contains(out, want) {
					t.Errorf("after %v: power status %q, want %q", s.args, out, want)
				}
			}
			// A reset of a VM that is off is refused, not faked.
			b.vm.set(func(st *controller.Status) { st.Power = controller.Off })
			if out, err := b.ipmitool(testUser, testPassword, append(slices.Clone(opt), "power", "reset")...); err == nil {
				t.Errorf("power reset while off succeeded: %s", out)
			}
		})
	}
}

func TestIPMItoolInfo(t *testing.T) {
	needIPMItool(t)
	b := startBMC(t)
	out := b.ok("mc", "info")
	for _, w := range []string{"Firmware Revision         : 1.04", "IPMI Version              : 2.0"} {
		if !strings.Contains(out, w) {
			t.Errorf("mc info lacks %q:\n%s", w, out)
		}
	}
	if out := b.ok("mc", "guid"); !strings.Contains(strings.ToLower(out), fakeUUID) {
		t.Errorf("mc guid does not show the VM's UUID %s:\n%s", fakeUUID, out)
	}
	if out := b.ok("chassis", "status"); !strings.Contains(out, "System Power         : on") {
		t.Errorf("chassis status:\n%s", out)
	}
}

func TestIPMItoolBootdev(t *testing.T) {
	needIPMItool(t)
	b := startBMC(t)
	tests := []struct {
		args  []string
		calls []string
		boot  controller.BootOverride
		mode  config.BootMode
		flags string // in bootparam get 5
	}{
		// The EFI bit never changes the firmware: a UEFI VM stays UEFI.
		{[]string{"pxe"}, []string{"SetBoot network true"}, controller.BootOverride{Device: controller.BootNetwork, Once: true}, config.BootUEFI, "Force PXE"},
		{[]string{"disk", "options=persistent,efiboot"}, []string{"SetBoot disk false"}, controller.BootOverride{Device: controller.BootDisk}, config.BootUEFI, "Force Boot from default Hard-Drive"},
		{[]string{"cdrom", "options=efiboot"}, []string{"SetBoot cd true"}, controller.BootOverride{Device: controller.BootCD, Once: true}, config.BootUEFI, "Force Boot from CD/DVD"},
		{[]string{"none"}, []string{"SetBoot  false"}, controller.BootOverride{}, config.BootUEFI, "No override"},
	}
	for _, tc := range tests {
		b.vm.Calls()
		b.ok(append([]string{"chassis", "bootdev"}, tc.args...)...)
		calls := b.vm.Calls()
		if !slices.Equal(calls, tc.calls) {
			t.Errorf("bootdev %v: calls %q, want %q", tc.args, calls, tc.calls)
		}
		st := b.vm.Status()
		if st.Boot != tc.boot || st.BootMode != tc.mode {
			t.Errorf("bootdev %v: boot %+v mode %s, want %+v %s", tc.args, st.Boot, st.BootMode, tc.boot, tc.mode)
		}
		out := b.ok("chassis", "bootparam", "get", "5")
		if !strings.Contains(out, tc.flags) {
			t.Errorf("bootdev %v: bootparam get 5 lacks %q:\n%s", tc.args, tc.flags, out)
		}
	}
	out := b.ok("chassis", "bootparam", "get", "5")
	t.Logf("%s", out)
}

// ipmitool with a wrong password, a wrong user, or a cipher suite without
// authentication or encryption: refused, and the VM untouched.
func TestIPMItoolRefused(t *testing.T) {
	needIPMItool(t)
	b := startBMC(t)
	for _, tc := range []struct {
		name, user, pass string
		args             []string
		want             string
	}{
		{"wrong password", testUser, "not-the-password", nil, "RAKP 2 HMAC is invalid"},
		{"wrong user", "root", testPassword, nil, "unauthorized name"},
		{"cipher suite 0", testUser, testPassword, []string{"-C", "0"}, "no matching cipher suite"},
		{"cipher suite 1", testUser, testPassword, []string{"-C", "1"}, "no matching cipher suite"},
		{"cipher suite 2", testUser, testPassword, []string{"-C", "2"}, "no matching cipher suite"},
	} {
		// -v: ipmitool says why only when verbose.
		out, err := b.ipmitool(tc.user, tc.pass, append(tc.args, "-v", "power", "off")...)
		if err == nil {
			t.Errorf("%s: ipmitool succeeded: %s", tc.name, out)
		}
		if !strings.Contains(strings.ToLower(out), strings.ToLower(tc.want)) {
			t.Errorf("%s: ipmitool says %q, want it to say %q", tc.name, out, tc.want)
		}
	}
	if calls := b.vm.Calls(); len(calls) != 0 {
		t.Errorf("the VM was touched: %q", calls)
	}
}
