package vm

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/qemu"
)

// TestISOBootOrder: an installer ISO boots first until the VM's disk
// exists; then the disk boots first and the CD stays, unless FORCE_ISO or
// BOOT_ORDER says otherwise.
func TestISOBootOrder(t *testing.T) {
	dir := t.TempDir()
	iso := filepath.Join(dir, "install.iso")
	data := make([]byte, 0x9000)
	copy(data[0x8001:], "CD001")
	if err := os.WriteFile(iso, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		env        map[string]string
		diskExists bool
		want       []qemu.BootDevice
	}{
		{"first start", nil, false, nil},
		{"installed", nil, true, []qemu.BootDevice{qemu.BootDisk, qemu.BootCD}},
		{"installed, FORCE_ISO=1", map[string]string{"FORCE_ISO": "1"}, true, nil},
		{"installed, BOOT_ORDER=cdrom", map[string]string{"BOOT_ORDER": "cdrom"}, true, []qemu.BootDevice{qemu.BootCD}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"BOOT_FROM": iso, "DATA_DIR": t.TempDir(), "GUEST_NAME": "win"}
			for k, v := range tc.env {
				env[k] = v
			}
			p := plan(t, env, testFacts())
			if tc.diskExists {
				if err := os.MkdirAll(p.Paths.State, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p.Paths.Disk, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			spec, _, err := p.DryRunSpec()
			if err != nil {
				t.Fatal(err)
			}
			if spec.CDROM != iso {
				t.Errorf("CDROM = %q, want the ISO attached", spec.CDROM)
			}
			if !slices.Equal(spec.BootOrder, tc.want) {
				t.Errorf("BootOrder = %q, want %q", spec.BootOrder, tc.want)
			}
		})
	}
}

func TestBootOrderNetworkNeedsANIC(t *testing.T) {
	c := loadConfig(t, map[string]string{"BOOT_ORDER": "network", "NETWORK_MODE": "none"})
	_, err := MakePlan(c, testFacts())
	if ce, ok := err.(*config.Error); !ok || ce.Var != "BOOT_ORDER" {
		t.Errorf("BOOT_ORDER=network without a NIC: %v, want a BOOT_ORDER error", err)
	}
}

func TestShellWarning(t *testing.T) {
	p := plan(t, map[string]string{"SHELL": "/usr/bin/zsh"}, testFacts())
	if !slices.ContainsFunc(p.Warnings, func(w string) bool { return strings.Contains(w, "SHELL=/usr/bin/zsh") }) {
		t.Errorf("no warning about SHELL: %q", p.Warnings)
	}
}
