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
)

// FirmwareFiles finds the UEFI code and vars template for mode, using exists
// to test paths (os.Stat in production).
func FirmwareFiles(mode config.BootMode, exists func(string) bool) (code, vars string, err error) {
	codes, varss := uefiCode, uefiVars
	if mode == config.BootSecure {
		codes, varss = secureCode, secureVars
	}
	for i := range codes {
		if exists(codes[i]) && exists(varss[i]) {
			return codes[i], varss[i], nil
		}
	}
	return "", "", &config.Error{Var: "BOOT_MODE", Value: string(mode),
		Accepted: "legacy, or install OVMF (Debian: apt-get install ovmf)",
		Err:      fmt.Errorf("no UEFI firmware found (looked for %s)", codes[0])}
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
