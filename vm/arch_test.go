package vm

import (
	"errors"
	"maps"
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

	// On an arm64 host KVM runs it.
	f := armFacts()
	f.HostArch = config.ArchAArch64
	if s := plan(t, env, f).Spec; s.Accel != "kvm" || s.CPU != "host" {
		t.Errorf("on an arm64 host with KVM: accel %s, cpu %s; want kvm, host", s.Accel, s.CPU)
	}
	// An x86_64 guest there is the foreign one.
	if s := plan(t, baseEnv, f).Spec; s.Accel != "tcg" {
		t.Errorf("x86_64 guest on an arm64 host: accel %s, want tcg", s.Accel)
	}
}

func TestMakePlanAArch64Refuses(t *testing.T) {
	tests := []struct {
		name            string
		env             map[string]string
		facts           func() Facts
		varName, advice string
	}{
		{"kvm on an x86_64 host", map[string]string{"ACCEL": "kvm"}, armFacts, "ACCEL", "the host is x86_64"},
		{"REQUIRE_KVM on an x86_64 host", map[string]string{"REQUIRE_KVM": "1"}, armFacts, "ACCEL", "KVM runs only guests of the host's architecture"},
		{"no AAVMF", map[string]string{}, testFacts, "BOOT_MODE", "qemu-efi-aarch64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := maps.Clone(baseEnv)
			maps.Copy(env, tc.env)
			env["ARCH"] = "aarch64"
			_, err := MakePlan(loadConfig(t, env), tc.facts())
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != tc.varName || !strings.Contains(err.Error(), tc.advice) {
				t.Errorf("MakePlan = %v; want a %s error saying %q", err, tc.varName, tc.advice)
			}
		})
	}
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
