package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadArch(t *testing.T) {
	kernel := writeTemp(t, "vmlinuz")
	arm := testHost
	arm.Arch = ArchAArch64
	tests := []struct {
		name   string
		env    map[string]string
		host   Host
		arch   Arch
		distro string
	}{
		{"unset: decided by the plan", map[string]string{}, testHost, "", "ubuntu-2404"},
		{"amd64 alias", map[string]string{"ARCH": "amd64"}, testHost, ArchX86_64, "ubuntu-2404"},
		{"aarch64 takes the default's arm64 entry", map[string]string{"ARCH": "aarch64"}, testHost, ArchAArch64, "ubuntu-2404-arm64"},
		{"arm64 alias, any case", map[string]string{"ARCH": " ARM64"}, testHost, ArchAArch64, "ubuntu-2404-arm64"},
		{"an explicit DISTRO stays", map[string]string{"ARCH": "aarch64", "DISTRO": "debian-12-arm64"}, testHost, ArchAArch64, "debian-12-arm64"},
		{"kernel without a disk", map[string]string{"ARCH": "aarch64", "KERNEL": kernel}, testHost, ArchAArch64, ""},
		{"arm64 host: its default entry", map[string]string{}, arm, "", "ubuntu-2404-arm64"},
		{"arm64 host, x86_64 asked", map[string]string{"ARCH": "x86_64"}, arm, ArchX86_64, "ubuntu-2404"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.env, tc.host)
			if err != nil {
				t.Fatal(err)
			}
			if c.Arch != tc.arch || c.Boot.Distro != tc.distro {
				t.Errorf("arch %q, distro %q; want %q, %q", c.Arch, c.Boot.Distro, tc.arch, tc.distro)
			}
		})
	}
	if _, err := Load(map[string]string{"ARCH": "riscv64"}, testHost); !isConfigError(err, "ARCH") {
		t.Errorf("ARCH=riscv64: %v; want an ARCH error", err)
	} else if want := "x86_64 (or amd64) or aarch64 (or arm64)"; !strings.Contains(err.Error(), want) {
		t.Errorf("ARCH=riscv64: %v; want it to say %q", err, want)
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
