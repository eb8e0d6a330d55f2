package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadArch(t *testing.T) {
	kernel := writeTemp(t, "vmlinuz")
	tests := []struct {
		name            string
		env             map[string]string
		arch            string
		machine, binary string
		distro          string
	}{
		{"default", map[string]string{}, "x86_64", "q35", "qemu-system-x86_64", "ubuntu-2404"},
		{"amd64 alias", map[string]string{"ARCH": "amd64"}, "x86_64", "q35", "qemu-system-x86_64", "ubuntu-2404"},
		{"aarch64 picks the default's arm64 entry", map[string]string{"ARCH": "aarch64"}, "aarch64", "virt", "qemu-system-aarch64", "ubuntu-2404-arm64"},
		{"arm64 alias, any case", map[string]string{"ARCH": "ARM64"}, "aarch64", "virt", "qemu-system-aarch64", "ubuntu-2404-arm64"},
		{"the entry decides", map[string]string{"DISTRO": "debian-12-arm64"}, "aarch64", "virt", "qemu-system-aarch64", "debian-12-arm64"},
		{"the seed's arm64 name", map[string]string{"DISTRO": "ubuntu-24.04-cloud-arm64"}, "aarch64", "virt", "qemu-system-aarch64", "ubuntu-2404-arm64"},
		{"entry and ARCH agree", map[string]string{"DISTRO": "debian-12-arm64", "ARCH": "arm64"}, "aarch64", "virt", "qemu-system-aarch64", "debian-12-arm64"},
		{"kernel without a disk", map[string]string{"ARCH": "aarch64", "KERNEL": kernel}, "aarch64", "virt", "qemu-system-aarch64", ""},
		{"legacy with a kernel: no firmware", map[string]string{"ARCH": "aarch64", "KERNEL": kernel, "BOOT_MODE": "legacy"}, "aarch64", "virt", "qemu-system-aarch64", ""},
		{"own machine and binary", map[string]string{"ARCH": "aarch64", "MACHINE": "virt-7.2", "QEMU_BINARY": "/opt/qemu/bin/qemu-system-aarch64"}, "aarch64", "virt-7.2", "/opt/qemu/bin/qemu-system-aarch64", "ubuntu-2404-arm64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.env)
			if string(c.Arch) != tc.arch || c.Machine != tc.machine || c.QEMUBinary != tc.binary || c.Boot.Distro != tc.distro {
				t.Errorf("got arch %s, machine %s, binary %s, distro %q; want %s, %s, %s, %q",
					c.Arch, c.Machine, c.QEMUBinary, c.Boot.Distro, tc.arch, tc.machine, tc.binary, tc.distro)
			}
		})
	}
}

func TestLoadArchRefuses(t *testing.T) {
	kernel := writeTemp(t, "vmlinuz")
	tests := []struct {
		env    map[string]string
		name   string
		advice string
	}{
		{map[string]string{"ARCH": "riscv64"}, "ARCH", "x86_64 (or amd64) or aarch64 (or arm64)"},
		{map[string]string{"ARCH": "x86_64", "DISTRO": "debian-12-arm64"}, "ARCH", "aarch64 (or unset) with DISTRO=debian-12-arm64"},
		{map[string]string{"ARCH": "aarch64", "DISTRO": "debian-12"}, "ARCH", "--list-distros --arch aarch64"},
		{map[string]string{"ARCH": "aarch64", "BOOT_MODE": "legacy", "DISTRO": "debian-12-arm64"}, "BOOT_MODE", "uefi"},
		{map[string]string{"ARCH": "aarch64", "BOOT_MODE": "legacy", "BOOT_FROM": "blank"}, "BOOT_MODE", "qemu-efi-aarch64"},
		{map[string]string{"ARCH": "aarch64", "BOOT_MODE": "secure"}, "BOOT_MODE", "x86_64 only"},
		{map[string]string{"ARCH": "aarch64", "DISK_TYPE": "ide"}, "DISK_TYPE", "virtio, scsi or nvme"},
		{map[string]string{"ARCH": "aarch64", "HYPERV": "1"}, "HYPERV", "x86 CPU flags"},
		{map[string]string{"ARCH": "aarch64", "MACHINE": "q35"}, "MACHINE", "virt"},
		{map[string]string{"ARCH": "aarch64", "KERNEL": kernel, "MACHINE": "pc"}, "MACHINE", "virt"},
	}
	for _, tc := range tests {
		_, err := Load(tc.env, testHost)
		if !isConfigError(err, tc.name) || !strings.Contains(err.Error(), tc.advice) {
			t.Errorf("Load(%v) = %v, want a %s error saying %q", tc.env, err, tc.name, tc.advice)
		}
	}
}

// writeTemp makes an empty file called name in a test folder.
func writeTemp(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadArchArm64Host: unset, ARCH is the host's, so an arm64 machine
// (or container image) boots arm64 guests under KVM; an x86_64 DISTRO
// there still decides for itself.
func TestLoadArchArm64Host(t *testing.T) {
	h := testHost
	h.Arch = ArchAArch64
	kernel := writeTemp(t, "Image")
	tests := []struct {
		env    map[string]string
		arch   string
		distro string
	}{
		{map[string]string{}, "aarch64", "ubuntu-2404-arm64"},
		{map[string]string{"KERNEL": kernel}, "aarch64", ""},
		{map[string]string{"DISTRO": "debian-12"}, "x86_64", "debian-12"},
		{map[string]string{"ARCH": "x86_64"}, "x86_64", "ubuntu-2404"},
	}
	for _, tc := range tests {
		c, err := Load(tc.env, h)
		if err != nil {
			t.Errorf("Load(%v) on an arm64 host: %v", tc.env, err)
			continue
		}
		if string(c.Arch) != tc.arch || c.Boot.Distro != tc.distro {
			t.Errorf("Load(%v) on an arm64 host: arch %s, distro %q; want %s, %q", tc.env, c.Arch, c.Boot.Distro, tc.arch, tc.distro)
		}
	}
}
