package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// arm64GuestDir holds the arm64 build of the busybox test guest
// (integration/guest/build.sh DIR arm64; make guest-arm64).
func arm64GuestDir() string {
	if d := os.Getenv("VMRUNNER_TEST_GUEST_ARM64"); d != "" {
		return d
	}
	return filepath.Join(repoRoot, ".cache", "guest-arm64")
}

func needArm64Guest(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("qemu-system-aarch64")
	need(t, "qemu-system-aarch64 on PATH (Debian: qemu-system-arm)", err == nil)
	dir := arm64GuestDir()
	_, err = os.Stat(filepath.Join(dir, "initrd.gz"))
	need(t, "the arm64 test guest in "+dir+" (integration/guest/build.sh "+dir+" arm64)", err == nil)
}

// arm64Env boots the arm64 test guest with ARCH=aarch64 on this x86_64
// host: ACCEL stays auto, which must choose TCG without trying KVM.
func arm64Env(t *testing.T) (map[string]string, int) {
	env := GuestEnv(t)
	delete(env, "ACCEL")
	dir := arm64GuestDir()
	web := FreePort(t)
	env["ARCH"] = "aarch64"
	env["KERNEL"] = filepath.Join(dir, "vmlinuz")
	env["INITRD"] = filepath.Join(dir, "initrd.gz")
	env["KERNEL_CMDLINE"] = "console=ttyAMA0 quiet"
	env["GUEST_NAME"] = "armvm"
	env["PORT_FWD"] = fmt.Sprintf("%d:80", web)
	return env, web
}

// TestArm64DirectKernel boots the arm64 guest's kernel straight on the
// virt machine (BOOT_MODE=legacy with KERNEL: no firmware, a device
// tree): it gets its NAT lease, serves its port through PORT_FWD, and
// SIGTERM's power button (a GPIO key here) powers it off with exit 0.
func TestArm64DirectKernel(t *testing.T) {
	t.Parallel()
	needArm64Guest(t)
	env, web := arm64Env(t)
	runArm64(t, env, web)
}

// TestArm64UEFI boots the same kernel through AAVMF (the default
// BOOT_MODE=uefi): the firmware loads it, the guest gets ACPI, and the
// power button is ACPI's. The VM's own copy of the variables is made from
// AAVMF_VARS.fd.
func TestArm64UEFI(t *testing.T) {
	t.Parallel()
	needArm64Guest(t)
	_, err := os.Stat("/usr/share/AAVMF/AAVMF_CODE.fd")
	need(t, "AAVMF (Debian: qemu-efi-aarch64)", err == nil)
	env, web := arm64Env(t)
	delete(env, "BOOT_MODE")
	v := runArm64(t, env, web)
	vars, err := os.Stat(filepath.Join(v.StateDir(), "efivars.fd"))
	tmpl, terr := os.Stat("/usr/share/AAVMF/AAVMF_VARS.fd")
	if err != nil || terr != nil || vars.Size() != tmpl.Size() {
		t.Errorf("efivars.fd: %v, %v: want a copy of AAVMF_VARS.fd", err, terr)
	}
}

// runArm64 boots env's guest, checks what a user checks and stops it.
func runArm64(t *testing.T, env map[string]string, web int) *VM {
	t.Helper()
	start := time.Now()
	v := Start(t, env)
	// TCG emulating another architecture: several times slower than the
	// x86_64 guest, more so on a loaded machine.
	v.WaitLine(`^VMTEST ready`, 6*time.Minute)
	mode := env["BOOT_MODE"]
	if mode == "" {
		mode = "uefi"
	}
	t.Logf("arm64 guest (BOOT_MODE=%s): vmrunner start to ready in %s", mode, time.Since(start).Round(100*time.Millisecond))

	if k := v.WaitLine(`^VMTEST init kernel=(\S+)`, time.Second); !strings.HasSuffix(k[1], "-arm64") {
		t.Errorf("guest kernel %q, want Debian's arm64 one", k[1])
	}
	nic := v.WaitLine(`^VMTEST nic name=eth0 mac=\S+ mtu=\d+ ipv4=(\S*)`, time.Second)
	if nic[1] != "10.0.2.15/24" {
		t.Errorf("guest IPv4 = %q, want QEMU user-mode's lease 10.0.2.15/24", nic[1])
	}
	if !strings.Contains(v.Console(), "VMTEST cidata found=yes") {
		t.Error("the guest found no cloud-init seed")
	}
	body := HTTPGet(t, fmt.Sprintf("http://127.0.0.1:%d/", web), time.Minute)
	if !strings.Contains(body, "vmtest-guest ok hostname=armvm") {
		t.Errorf("forwarded port answered %q", body)
	}
	logs := v.Stderr()
	if !strings.Contains(logs, "falling back to TCG") || !strings.Contains(logs, "architecture") {
		t.Errorf("ACCEL=auto on an x86_64 host: no warning saying TCG is used for the foreign architecture:\n%s", logs)
	}

	stop := time.Now()
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(2 * time.Minute); code != 0 {
		t.Fatalf("exit status after SIGTERM = %d, want 0 (guest powered off)", code)
	}
	if !strings.Contains(v.Console(), "VMTEST powerbutton") {
		t.Error("the guest never saw the power button")
	}
	t.Logf("SIGTERM to exit: %s", time.Since(stop).Round(100*time.Millisecond))
	return v
}
