package vm

import (
	"slices"
	"testing"
)

// A ROM named by IPXE_ROM_PATH is a file QEMU reads outside the state
// folder: its own user must reach it, as the kernel or the base image.
func TestQEMUFilesOptionROM(t *testing.T) {
	f := testFacts()
	f.FirmwareExists = existsIn(ovmfCode, ovmfVars, "/usr/lib/ipxe/qemu/efi-e1000.rom")
	p := plan(t, map[string]string{"BOOT_FROM": "blank", "IPXE_ENABLE": "1", "NETWORK_MODEL": "e1000"}, f)
	_, read, _ := p.QEMUFiles(p.Spec, "")
	if !slices.Contains(read, "/usr/lib/ipxe/qemu/efi-e1000.rom") {
		t.Errorf("files QEMU reads: %q; want the iPXE ROM among them", read)
	}
	if len(p.Warnings) != 1 || p.Warnings[0] == "" {
		t.Errorf("warnings %q; want one saying nat serves no boot file", p.Warnings)
	}
}
