package config

import (
	"errors"
	"runtime"
	"strings"

	"github.com/vmrunner/vmrunner/image"
)

// Guest architectures (ARCH), by QEMU's names.
const (
	ArchX86_64  = image.ArchX86_64
	ArchAArch64 = image.ArchAArch64
)

// archDefaults are what MACHINE and QEMU_BINARY default to for each
// architecture; their envDefault tags name the x86_64 ones.
var archDefaults = map[image.Arch]struct{ machine, binary string }{
	ArchX86_64:  {"q35", "qemu-system-x86_64"},
	ArchAArch64: {"virt", "qemu-system-aarch64"},
}

// HostArch is the architecture vmrunner runs on: ARCH's default, and the
// one KVM runs guests of.
func HostArch() image.Arch {
	if runtime.GOARCH == "arm64" {
		return ArchAArch64
	}
	return ArchX86_64
}

// parseArch reads ARCH before the boot source, which its architecture
// chooses when DISTRO is unset; unset, it is the host's (zero: x86_64).
func parseArch(c *Config, v string, host Host) error {
	c.Arch = host.Arch
	if c.Arch == "" {
		c.Arch = ArchX86_64
	}
	if strings.TrimSpace(v) == "" {
		return nil
	}
	a, ok := image.ParseArch(v)
	if !ok {
		return &Error{Var: "ARCH", Value: v, Accepted: "x86_64 (or amd64) or aarch64 (or arm64)"}
	}
	c.Arch = a
	return nil
}

// loadArch settles the architecture after loadBoot: a catalog entry's
// decides when ARCH is unset (the -arm64 ones are aarch64); one that
// contradicts ARCH is an error, since the image would not boot. MACHINE
// and QEMU_BINARY, when unset, follow the architecture.
func loadArch(c *Config, v string, environ map[string]string) error {
	if c.distroArch != "" && c.distroArch != c.Arch {
		if strings.TrimSpace(v) != "" {
			return &Error{Var: "ARCH", Value: v, Accepted: string(c.distroArch) + " (or unset) with DISTRO=" + c.Boot.Distro +
				", an " + string(c.distroArch) + " image; or a DISTRO entry for " + string(c.Arch) + " (vmrunner --list-distros --arch " + string(c.Arch) + ")"}
		}
		c.Arch = c.distroArch
	}
	d := archDefaults[c.Arch]
	if _, set := environ["MACHINE"]; !set {
		c.Machine = d.machine
	}
	if _, set := environ["QEMU_BINARY"]; !set {
		c.QEMUBinary = d.binary
	}
	return nil
}

// checkArch refuses what an aarch64 guest cannot have, once everything is
// loaded: the virt machine has no BIOS, no IDE bus and no Hyper-V.
func checkArch(c *Config) error {
	if c.Arch != ArchAArch64 {
		return nil
	}
	var errs []error
	if m, _, _ := strings.Cut(c.Machine, ","); m != "virt" && !strings.HasPrefix(m, "virt-") {
		errs = append(errs, &Error{Var: "MACHINE", Value: c.Machine, Accepted: "virt (or a versioned virt-N.M) with ARCH=aarch64"})
	}
	switch {
	case c.BootMode == BootLegacy && c.Kernel == "":
		errs = append(errs, &Error{Var: "BOOT_MODE", Value: string(c.BootMode),
			Accepted: "uefi with ARCH=aarch64: arm64 has no BIOS, it boots with AAVMF (Debian: qemu-efi-aarch64); legacy only together with KERNEL, which then boots without firmware"})
	case c.BootMode == BootSecure:
		errs = append(errs, &Error{Var: "BOOT_MODE", Value: string(c.BootMode),
			Accepted: "uefi (or legacy with KERNEL) with ARCH=aarch64: Secure Boot is x86_64 only in this build"})
	}
	if c.DiskBus == BusIDE {
		errs = append(errs, &Error{Var: "DISK_TYPE", Value: string(c.DiskBus), Accepted: "virtio, scsi or nvme with ARCH=aarch64 (the virt machine has no IDE)"})
	}
	if c.Hardware.HyperV {
		errs = append(errs, &Error{Var: "HYPERV", Value: "1", Accepted: "0 with ARCH=aarch64 (Hyper-V enlightenments are x86 CPU flags)"})
	}
	return errors.Join(errs...)
}
