package vm

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmrunner/vmrunner/config"
)

// armFacts is testFacts on an x86_64 host that also has Debian's AAVMF.
func armFacts() Facts {
	f := testFacts()
	f.HostArch = config.ArchX86_64
	x86 := f.FirmwareExists
	f.FirmwareExists = func(p string) bool {
		return x86(p) || p == "/usr/share/AAVMF/AAVMF_CODE.fd" || p == "/usr/share/AAVMF/AAVMF_VARS.fd"
	}
	return f
}

// TestArgvGoldenAArch64 pins an arm64 guest's command line on an x86_64
// host: TCG although KVM works there, the virt machine with AAVMF, and
// the console on virtio-gpu.
func TestArgvGoldenAArch64(t *testing.T) {
	env := maps.Clone(baseEnv)
	maps.Copy(env, map[string]string{"ARCH": "aarch64", "GRAPHICS": "vnc", "DISK_TYPE": "scsi"})
	checkGolden(t, "aarch64", argv(t, env, armFacts()))
}

func TestMakePlanAArch64(t *testing.T) {
	env := maps.Clone(baseEnv)
	env["ARCH"] = "arm64"
	p := plan(t, env, armFacts())
	s := p.Spec
	if p.Arch != config.ArchAArch64 || p.QEMUBinary != "qemu-system-aarch64" {
		t.Errorf("arch %s, QEMU %s; want aarch64, qemu-system-aarch64", p.Arch, p.QEMUBinary)
	}
	if s.Accel != "tcg" || s.CPU != "max" || s.Machine != "virt,gic-version=max" {
		t.Errorf("accel %s, cpu %s, machine %s; want tcg, max, virt,gic-version=max", s.Accel, s.CPU, s.Machine)
	}
	if s.Firmware == nil || s.Firmware.Code != "/usr/share/AAVMF/AAVMF_CODE.fd" || p.Firmwares[config.BootUEFI].VarsTemplate != "/usr/share/AAVMF/AAVMF_VARS.fd" {
		t.Errorf("firmware %+v, templates %+v; want AAVMF", s.Firmware, p.Firmwares)
	}
	if _, ok := p.Firmwares[config.BootSecure]; ok {
		t.Errorf("a secure boot firmware for aarch64: %+v", p.Firmwares)
	}
	if !slices.ContainsFunc(p.Warnings, func(w string) bool { return strings.Contains(w, "architecture") }) {
		t.Errorf("warnings %q: want one saying why KVM is not used", p.Warnings)
	}

	// On an arm64 host KVM runs it, and an x86_64 guest is the foreign one.
	f := armFacts()
	f.HostArch = config.ArchAArch64
	if s := plan(t, env, f).Spec; s.Accel != "kvm" || s.CPU != "host" {
		t.Errorf("on an arm64 host with KVM: accel %s, cpu %s; want kvm, host", s.Accel, s.CPU)
	}
	env["ARCH"] = "x86_64"
	if s := plan(t, env, f).Spec; s.Accel != "tcg" || s.Machine != "q35" {
		t.Errorf("x86_64 guest on an arm64 host: accel %s, machine %s; want tcg, q35", s.Accel, s.Machine)
	}
	// Unset, ARCH is the host's when no DISTRO entry decides.
	if p := plan(t, baseEnv, f); p.Arch != config.ArchAArch64 || p.QEMUBinary != "qemu-system-aarch64" {
		t.Errorf("ARCH unset on an arm64 host: %s with %s", p.Arch, p.QEMUBinary)
	}
}

// TestMakePlanArchFromDistro: an -arm64 catalog entry makes the guest
// aarch64 with ARCH unset, its download the arm64 image.
func TestMakePlanArchFromDistro(t *testing.T) {
	for _, distro := range []string{"debian-12-arm64", "debian-12-cloud-arm64"} {
		p := plan(t, map[string]string{"DATA_DIR": "/data", "GUEST_NAME": "web", "DISTRO": distro}, armFacts())
		if p.Arch != config.ArchAArch64 || p.QEMUBinary != "qemu-system-aarch64" || p.Spec.Machine != "virt,gic-version=max" {
			t.Errorf("DISTRO=%s: arch %s, QEMU %s, machine %s", distro, p.Arch, p.QEMUBinary, p.Spec.Machine)
		}
		if p.Download == nil || !strings.Contains(p.Download.URL, "genericcloud-arm64") {
			t.Errorf("DISTRO=%s: download %+v, want the arm64 image", distro, p.Download)
		}
	}
	p := plan(t, map[string]string{"DATA_DIR": "/data", "GUEST_NAME": "web", "DISTRO": "debian-12", "MACHINE": "pc"}, armFacts())
	if p.Arch != config.ArchX86_64 || p.QEMUBinary != "qemu-system-x86_64" || p.Spec.Machine != "pc" {
		t.Errorf("DISTRO=debian-12 MACHINE=pc: arch %s, QEMU %s, machine %s", p.Arch, p.QEMUBinary, p.Spec.Machine)
	}
}

func TestMakePlanAArch64Refuses(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), "Image")
	if err := os.WriteFile(kernel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name            string
		env             map[string]string
		facts           func() Facts
		varName, advice string
	}{
		{"x86_64 with an arm64 entry", map[string]string{"ARCH": "x86_64", "DISTRO": "debian-12-arm64"}, armFacts, "ARCH", "aarch64 (or unset) with DISTRO=debian-12-arm64"},
		{"aarch64 with an x86_64 entry", map[string]string{"DISTRO": "debian-12"}, armFacts, "ARCH", "--list-distros --arch aarch64"},
		{"legacy with an arm64 entry", map[string]string{"BOOT_MODE": "legacy", "DISTRO": "debian-12-arm64"}, armFacts, "BOOT_MODE", "[uefi]"},
		{"legacy without a kernel", map[string]string{"BOOT_MODE": "legacy"}, armFacts, "BOOT_MODE", "qemu-efi-aarch64"},
		{"secure boot", map[string]string{"BOOT_MODE": "secure"}, armFacts, "BOOT_MODE", "x86_64 only"},
		{"IDE", map[string]string{"DISK_TYPE": "ide"}, armFacts, "DISK_TYPE", "virtio, scsi or nvme"},
		{"Hyper-V", map[string]string{"HYPERV": "1"}, armFacts, "HYPERV", "x86 CPU flags"},
		{"TPM", map[string]string{"TPM": "1"}, armFacts, "TPM", "0 or auto"},
		{"GPU", map[string]string{"GPU": "intel", "GPU_RENDER_NODE": ""}, armFacts, "GPU", "GRAPHICS=vnc"},
		{"q35", map[string]string{"MACHINE": "q35"}, armFacts, "MACHINE", "virt"},
		{"pc with a kernel", map[string]string{"MACHINE": "pc", "KERNEL": kernel, "BOOT_FROM": ""}, armFacts, "MACHINE", "virt"},
		{"kvm on an x86_64 host", map[string]string{"ACCEL": "kvm"}, armFacts, "ACCEL", "the host is x86_64"},
		{"REQUIRE_KVM on an x86_64 host", map[string]string{"REQUIRE_KVM": "1"}, armFacts, "REQUIRE_KVM", "KVM runs only guests of the host's architecture"},
		{"no AAVMF", map[string]string{}, testFacts, "BOOT_MODE", "qemu-efi-aarch64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := maps.Clone(baseEnv)
			env["ARCH"] = "aarch64"
			maps.Copy(env, tc.env)
			if env["BOOT_FROM"] == "" || env["DISTRO"] != "" {
				delete(env, "BOOT_FROM")
			}
			_, err := MakePlan(loadConfig(t, env), tc.facts())
			var ce *config.Error
			if !errors.As(err, &ce) || !isVarError(err, tc.varName) || !strings.Contains(err.Error(), tc.advice) {
				t.Errorf("MakePlan(%v) = %v; want a %s error saying %q", env, err, tc.varName, tc.advice)
			}
		})
	}
}

// isVarError says whether err (perhaps several joined) names name.
func isVarError(err error, name string) bool {
	var ce *config.Error
	if errors.As(err, &ce) && ce.Var == name {
		return true
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return slices.ContainsFunc(j.Unwrap(), func(e error) bool { return isVarError(e, name) })
	}
	return false
}

// TestKVMCreatesVM runs the arm64 hosts' probe here, where KVM makes VMs
// (whether they run is the x86_64 probe's question).
func TestKVMCreatesVM(t *testing.T) {
	kvm, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no /dev/kvm to probe: %v", err)
	}
	defer unix.Close(kvm)
	if ok, why := kvmCreatesVM(kvm); !ok {
		t.Errorf("kvmCreatesVM = false, %q; KVM_CREATE_VM works on this host", why)
	}
}
