package vm

import (
	"errors"
	"strings"

	"github.com/vmrunner/vmrunner/config"
)

// archDefaults are MACHINE's and QEMU_BINARY's defaults by architecture.
var archDefaults = map[config.Arch]struct{ machine, binary string }{
	config.ArchX86_64:  {"q35", "qemu-system-x86_64"},
	config.ArchAArch64: {"virt", "qemu-system-aarch64"},
}

// planArch decides the guest's architecture and its QEMU program, and
// returns the -machine value: ARCH when set, else the DISTRO entry's (the
// -arm64 ones are aarch64), else the host's. An entry that contradicts
// ARCH would not boot, and what the aarch64 virt machine lacks (a BIOS,
// IDE, Secure Boot, an ISA TPM, VGA, Hyper-V) is refused before anything
// is made.
func (p *Plan) planArch(f Facts) (machine string, err error) {
	c := p.Config
	p.Arch = c.Arch
	if c.Boot.Distro != "" {
		d, err := lookupDistro(c, f)
		if err != nil {
			return "", err
		}
		entry := config.Arch(d.Arch)
		if c.Arch != "" && c.Arch != entry {
			return "", &config.Error{Var: "ARCH", Value: string(c.Arch),
				Accepted: string(entry) + " (or unset) with DISTRO=" + c.Boot.Distro + ", an " + string(entry) + " image; or a DISTRO entry for " +
					string(c.Arch) + " (vmrunner --list-distros --arch " + string(c.Arch) + ")"}
		}
		p.Arch = entry
	}
	if p.Arch == "" {
		p.Arch = f.HostArch
	}
	if p.Arch == "" {
		p.Arch = config.ArchX86_64
	}
	d := archDefaults[p.Arch]
	machine, p.QEMUBinary = c.Machine, c.QEMUBinary
	if machine == "" {
		machine = d.machine
	}
	if p.QEMUBinary == "" {
		p.QEMUBinary = d.binary
	}
	if p.Arch == config.ArchAArch64 {
		if err := checkAArch64(c, machine); err != nil {
			return "", err
		}
	}
	return machineFor(p.Arch, machine), nil
}

// checkAArch64 refuses what the virt machine cannot give an aarch64 guest.
func checkAArch64(c *config.Config, machine string) error {
	var errs []error
	if m, _, _ := strings.Cut(machine, ","); m != "virt" && !strings.HasPrefix(m, "virt-") {
		errs = append(errs, &config.Error{Var: "MACHINE", Value: machine, Accepted: "virt (or a versioned virt-N.M) for an aarch64 guest"})
	}
	switch {
	case c.BootMode == config.BootLegacy && c.Kernel == "":
		errs = append(errs, &config.Error{Var: "BOOT_MODE", Value: string(c.BootMode),
			Accepted: "uefi for an aarch64 guest: arm64 has no BIOS, it boots with AAVMF (Debian: qemu-efi-aarch64); legacy only together with KERNEL, which then boots without firmware"})
	case c.BootMode == config.BootSecure:
		errs = append(errs, &config.Error{Var: "BOOT_MODE", Value: string(c.BootMode),
			Accepted: "uefi (or legacy with KERNEL) for an aarch64 guest: Secure Boot is x86_64 only in this build"})
	}
	if c.DiskBus == config.BusIDE {
		errs = append(errs, &config.Error{Var: "DISK_TYPE", Value: string(c.DiskBus), Accepted: "virtio, scsi or nvme for an aarch64 guest (the virt machine has no IDE)"})
	}
	if c.Hardware.TPM == config.TPMOn {
		errs = append(errs, &config.Error{Var: "TPM", Value: "1", Accepted: "0 or auto for an aarch64 guest: the TPM is attached as x86's ISA TPM (tpm-tis) in this build"})
	}
	if c.Hardware.GPU != "" {
		errs = append(errs, &config.Error{Var: "GPU", Value: c.Hardware.GPU, Accepted: "off for an aarch64 guest: GPU=intel is virtio-vga-gl, a VGA device the virt machine cannot boot with; GRAPHICS=vnc gives virtio-gpu"})
	}
	if c.Hardware.HyperV {
		errs = append(errs, &config.Error{Var: "HYPERV", Value: "1", Accepted: "0 for an aarch64 guest (Hyper-V enlightenments are x86 CPU flags)"})
	}
	return errors.Join(errs...)
}

// foreignKVM refuses KVM asked for a guest of another architecture than
// the host's (why says which): no host setting could make it work.
func foreignKVM(c *config.Config, why string) error {
	switch {
	case c.Accel == config.AccelKVM:
		return &config.Error{Var: "ACCEL", Value: string(c.Accel), Accepted: "auto or tcg for this guest: " + why}
	case c.RequireKVM:
		return &config.Error{Var: "REQUIRE_KVM", Value: "1", Accepted: "0 for this guest: " + why}
	}
	return nil
}
