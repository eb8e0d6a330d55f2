// Package vm turns a configuration into a running VM: pure decisions
// (accelerator, CPU, firmware, NIC backends, the QEMU spec) and the ordered
// start-up steps that create the state folder's files, each able to undo
// itself when a later step fails.
package vm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/qemu"
)

// ResolveAccel decides the accelerator. auto means KVM when the host's
// KVM runs guest code (kvmUsable), else TCG with a warning that gives
// kvmWhy, the probe's reason.
func ResolveAccel(req config.Accel, requireKVM, kvmUsable bool, kvmWhy string) (accel string, warning string, err error) {
	switch {
	case req == config.AccelTCG:
		return "tcg", "", nil
	case kvmUsable:
		return "kvm", "", nil
	case req == config.AccelKVM || requireKVM:
		return "", "", &config.Error{Var: "ACCEL", Value: string(req),
			Accepted: "tcg, or a host where KVM runs guests (docker run --device /dev/kvm; REQUIRE_KVM=1 forbids the TCG fallback)",
			Err:      errors.New("KVM is not usable: " + kvmWhy)}
	default:
		return "tcg", "KVM is not usable (" + kvmWhy + "): falling back to TCG, which is much slower", nil
	}
}

// ResolveCPU keeps the configured model, except that TCG cannot emulate
// "host": it gets "max", the richest model TCG offers.
func ResolveCPU(model, accel string) string {
	if accel == "tcg" && model == "host" {
		return "max"
	}
	return model
}

// Firmware file candidates, first match wins (Debian/Ubuntu, then Fedora/Arch).
var (
	uefiCode   = []string{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/x64/OVMF_CODE.4m.fd"}
	uefiVars   = []string{"/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/share/OVMF/OVMF_VARS.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"}
	secureCode = []string{"/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_CODE.secboot.fd", "/usr/share/edk2/ovmf/OVMF_CODE.secboot.fd", "/usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd"}
	secureVars = []string{"/usr/share/OVMF/OVMF_VARS_4M.ms.fd", "/usr/share/OVMF/OVMF_VARS.ms.fd", "/usr/share/edk2/ovmf/OVMF_VARS.secboot.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"}
	// AAVMF, the arm64 build of the same firmware: both files padded to
	// the virt machine's 64 MiB flash banks.
	aavmfCode = []string{"/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", "/usr/share/edk2/aarch64/QEMU_CODE.fd"}
	aavmfVars = []string{"/usr/share/AAVMF/AAVMF_VARS.fd", "/usr/share/edk2/aarch64/vars-template-pflash.raw", "/usr/share/edk2/aarch64/QEMU_VARS.fd"}
)

// FirmwareFiles finds the UEFI code and vars template of arch for mode,
// using exists to test paths (os.Stat in production).
func FirmwareFiles(arch config.Arch, mode config.BootMode, exists func(string) bool) (code, vars string, err error) {
	codes, varss, pkg := uefiCode, uefiVars, "ovmf"
	switch {
	case arch == config.ArchAArch64:
		codes, varss, pkg = aavmfCode, aavmfVars, "qemu-efi-aarch64"
		if mode == config.BootSecure { // planArch refuses it; with no firmware found, a switch to it is refused too
			codes, varss = nil, nil
		}
	case mode == config.BootSecure:
		codes, varss = secureCode, secureVars
	}
	for i := range codes {
		if exists(codes[i]) && exists(varss[i]) {
			return codes[i], varss[i], nil
		}
	}
	if codes == nil {
		return "", "", &config.Error{Var: "BOOT_MODE", Value: string(mode), Accepted: "uefi for an " + string(arch) + " guest"}
	}
	accepted := "legacy, or install " + pkg + " (Debian: apt-get install " + pkg + ")"
	if arch == config.ArchAArch64 {
		accepted = "install " + pkg + " (Debian: apt-get install " + pkg + "); arm64 has no BIOS to fall back to"
	}
	return "", "", &config.Error{Var: "BOOT_MODE", Value: string(mode), Accepted: accepted,
		Err: fmt.Errorf("no UEFI firmware found (looked for %s)", codes[0])}
}

// foreignArch is why KVM cannot run a guest of arch on a host of hostArch;
// "" when it could. Zero facts describe an x86_64 host.
func foreignArch(arch, hostArch config.Arch) string {
	if hostArch == "" {
		hostArch = config.ArchX86_64
	}
	if arch == hostArch {
		return ""
	}
	return fmt.Sprintf("the host is %s, and KVM runs only guests of the host's architecture: ARCH=%s runs under TCG", hostArch, arch)
}

// machineFor completes an aarch64 virt machine: gic-version=max gives the
// newest interrupt controller the accelerator has (GICv3 under TCG, the
// host's under KVM); QEMU's default GICv2 caps the guest at 8 vCPUs.
func machineFor(arch config.Arch, machine string) string {
	name, _, _ := strings.Cut(machine, ",")
	if arch != config.ArchAArch64 || strings.Contains(machine, "gic-version=") || (name != "virt" && !strings.HasPrefix(name, "virt-")) {
		return machine
	}
	return machine + ",gic-version=max"
}

// FileExists is the production exists function.
func FileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// ResolveDiskCache keeps DISK_CACHE and DISK_IO unless the state folder's
// filesystem refuses O_DIRECT, which cache=none and directsync (and so
// native AIO) need: QEMU would fail to open the disk, so writeback (for
// directsync writethrough, which still syncs every write) with threads is
// used instead, with a warning.
func ResolveDiskCache(cache, aio string, directIO bool) (string, string, string) {
	fallback := map[string]string{"none": "writeback", "directsync": "writethrough"}[cache]
	if fallback == "" || directIO {
		return cache, aio, ""
	}
	if aio == "native" {
		aio = "threads"
	}
	return fallback, aio, "the state folder's filesystem refuses O_DIRECT (tmpfs before Linux 6.6, some overlay filesystems), which DISK_CACHE=" + cache + " needs: using cache=" + fallback + ",aio=" + aio + "; put DATA_DIR on a volume to avoid it"
}

// DecidePersist says whether the state folder outlives the VM: PERSIST when
// set, else whether DATA_DIR is a mount point, as a container's volume is;
// without one the container's own layer would be lost with it anyway.
func DecidePersist(setting *bool, dataDirMounted bool) bool {
	if setting != nil {
		return *setting
	}
	return dataDirMounted
}

// QEMUFiles sorts the files QEMU opens by path: those in the state
// folder (the VM's own: disks, UEFI variables, seed), those elsewhere it
// only reads (kernel, initrd, base image, installer CD, firmware code,
// option ROMs),
// and those elsewhere it writes (host devices).
// spec is the run's (its CD medium, firmware) and base the disk's base.
func (p *Plan) QEMUFiles(s qemu.Spec, base string) (own, read, write []string) {
	inState := func(f string) bool { return filepath.Dir(f) == p.Paths.State }
	add := func(f string, writable bool) {
		switch {
		case f == "":
		case inState(f):
			own = append(own, f)
		case writable:
			write = append(write, f)
		default:
			read = append(read, f)
		}
	}
	add(s.Kernel, false)
	add(s.Initrd, false)
	add(base, false)
	add(s.CDROM, false)
	add(s.Seed, false)
	add(s.Disk, true)
	for _, d := range s.MoreDisks {
		add(d.Path, true)
	}
	if s.Firmware != nil {
		add(s.Firmware.Code, false)
		add(s.Firmware.Vars, true)
	}
	for _, n := range s.NICs {
		add(n.ROMFile, false) // IPXE_ROM_PATH
	}
	if d := s.Display; d != nil {
		add(d.PasswordFile, false)
		if d.Socket != "" {
			// The web console's socket: QEMU makes it in this folder.
			own = append(own, filepath.Dir(d.Socket))
		}
	}
	// virtiofsd (root, umask 077) makes its socket before QEMU starts;
	// connecting needs write permission, so it is handed over as QEMU's
	// own files are. 9p folders are opened by QEMU itself: they are
	// checked, never changed (docs/guest.md).
	for _, sh := range s.Shares {
		if sh.Virtiofs {
			add(sh.Socket, true)
		} else {
			add(sh.Path, !sh.ReadOnly)
		}
	}
	if s.GPU != nil {
		add(s.GPU.RenderNode, true)
	}
	return own, read, write
}

// QEMUDevices are the host devices whose group QEMU's user joins (the
// render node's is usually render); /dev/kvm's is joined anyway.
func (p *Plan) QEMUDevices(s qemu.Spec) []string {
	if s.GPU == nil {
		return nil
	}
	return []string{s.GPU.RenderNode}
}
