package vm

import (
	"errors"
	"strings"
	"testing"

	"github.com/vmrunner/vmrunner/config"
)

func TestResolveAccel(t *testing.T) {
	tests := []struct {
		req        config.Accel
		requireKVM bool
		kvm        bool
		want       string
		warn       bool
		err        bool
	}{
		{config.AccelAuto, false, true, "kvm", false, false},
		{config.AccelAuto, false, false, "tcg", true, false},
		{config.AccelAuto, true, true, "kvm", false, false},
		{config.AccelAuto, true, false, "", false, true},
		{config.AccelKVM, false, true, "kvm", false, false},
		{config.AccelKVM, false, false, "", false, true},
		{config.AccelKVM, true, false, "", false, true},
		{config.AccelTCG, false, true, "tcg", false, false},
		{config.AccelTCG, false, false, "tcg", false, false},
	}
	for _, tc := range tests {
		name := string(tc.req)
		if tc.requireKVM {
			name += "/require"
		}
		if tc.kvm {
			name += "/kvm"
		}
		t.Run(name, func(t *testing.T) {
			const why = "the test guest did not run within 100ms"
			got, warn, err := ResolveAccel(tc.req, tc.requireKVM, tc.kvm, why)
			if got != tc.want || (warn != "") != tc.warn || (err != nil) != tc.err {
				t.Fatalf("ResolveAccel(%q, %v, %v) = %q, %q, %v", tc.req, tc.requireKVM, tc.kvm, got, warn, err)
			}
			if tc.warn && (!strings.Contains(warn, "TCG") || !strings.Contains(warn, why)) {
				t.Errorf("warning %q does not say why it falls back to TCG", warn)
			}
			if err != nil {
				var ce *config.Error
				if !errors.As(err, &ce) || ce.Var != "ACCEL" || ce.Value != string(tc.req) || !strings.Contains(ce.Accepted, "/dev/kvm") {
					t.Errorf("error %#v, want an ACCEL *config.Error", err)
				}
				if !strings.Contains(err.Error(), "KVM is not usable: "+why) {
					t.Errorf("error %q does not say why KVM is not usable", err)
				}
			}
		})
	}
}

func TestResolveCPU(t *testing.T) {
	tests := []struct{ model, accel, want string }{
		{"host", "kvm", "host"},
		{"host", "tcg", "max"},
		{"max", "kvm", "max"},
		{"max", "tcg", "max"},
		{"Skylake-Server", "tcg", "Skylake-Server"},
		{"Skylake-Server,+vmx", "kvm", "Skylake-Server,+vmx"},
		{"qemu64", "tcg", "qemu64"},
	}
	for _, tc := range tests {
		if got := ResolveCPU(tc.model, tc.accel); got != tc.want {
			t.Errorf("ResolveCPU(%q, %q) = %q, want %q", tc.model, tc.accel, got, tc.want)
		}
	}
}

func existsIn(paths ...string) func(string) bool {
	set := map[string]bool{}
	for _, p := range paths {
		set[p] = true
	}
	return func(p string) bool { return set[p] }
}

func TestFirmwareFiles(t *testing.T) {
	debian := []string{
		"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd",
		"/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
		"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd",
	}
	aavmf := []string{"/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd", "/usr/share/AAVMF/AAVMF_CODE.ms.fd", "/usr/share/AAVMF/AAVMF_VARS.ms.fd"}
	tests := []struct {
		name       string
		arch       config.Arch
		mode       config.BootMode
		files      []string
		code, vars string
	}{
		{"debian arm64", config.ArchAArch64, config.BootUEFI, append(aavmf, debian...), "/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"},
		{"fedora arm64", config.ArchAArch64, config.BootUEFI, []string{"/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", "/usr/share/edk2/aarch64/vars-template-pflash.raw"},
			"/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", "/usr/share/edk2/aarch64/vars-template-pflash.raw"},
		{"debian uefi", config.ArchX86_64, config.BootUEFI, append(debian, aavmf...), "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
		{"debian secure", config.ArchX86_64, config.BootSecure, debian, "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"},
		{"old debian", config.ArchX86_64, config.BootUEFI, []string{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
			"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
		{"old debian secure", config.ArchX86_64, config.BootSecure, []string{"/usr/share/OVMF/OVMF_CODE.secboot.fd", "/usr/share/OVMF/OVMF_VARS.ms.fd"},
			"/usr/share/OVMF/OVMF_CODE.secboot.fd", "/usr/share/OVMF/OVMF_VARS.ms.fd"},
		{"fedora", config.ArchX86_64, config.BootUEFI, []string{"/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"},
			"/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"},
		{"fedora secure", config.ArchX86_64, config.BootSecure, []string{"/usr/share/edk2/ovmf/OVMF_CODE.secboot.fd", "/usr/share/edk2/ovmf/OVMF_VARS.secboot.fd"},
			"/usr/share/edk2/ovmf/OVMF_CODE.secboot.fd", "/usr/share/edk2/ovmf/OVMF_VARS.secboot.fd"},
		{"arch", config.ArchX86_64, config.BootUEFI, []string{"/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"},
			"/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"},
		// A code file without its vars is skipped for a complete pair.
		{"code without vars", config.ArchX86_64, config.BootUEFI, []string{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
			"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, vars, err := FirmwareFiles(tc.arch, tc.mode, existsIn(tc.files...))
			if err != nil || code != tc.code || vars != tc.vars {
				t.Errorf("FirmwareFiles = %q, %q, %v; want %q, %q", code, vars, err, tc.code, tc.vars)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		mode  config.BootMode
		files []string
	}{
		{"none", config.BootUEFI, nil},
		{"secure without secboot files", config.BootSecure, []string{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"}},
		{"vars only", config.BootUEFI, []string{"/usr/share/OVMF/OVMF_VARS_4M.fd"}},
	} {
		t.Run("missing "+tc.name, func(t *testing.T) {
			code, vars, err := FirmwareFiles(config.ArchX86_64, tc.mode, existsIn(tc.files...))
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != "BOOT_MODE" || ce.Value != string(tc.mode) || !strings.Contains(ce.Accepted, "legacy") {
				t.Fatalf("FirmwareFiles = %q, %q, %v; want a BOOT_MODE *config.Error", code, vars, err)
			}
			if !strings.Contains(err.Error(), "no UEFI firmware") {
				t.Errorf("error %q", err)
			}
		})
	}
}

func TestFirmwareFilesAArch64Missing(t *testing.T) {
	ovmf := existsIn("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd")
	_, _, err := FirmwareFiles(config.ArchAArch64, config.BootUEFI, ovmf)
	var ce *config.Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Accepted, "qemu-efi-aarch64") || strings.Contains(ce.Accepted, "legacy") {
		t.Errorf("aarch64 with OVMF only: %v; want advice to install qemu-efi-aarch64, not legacy", err)
	}
	all := existsIn("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd", "/usr/share/AAVMF/AAVMF_CODE.ms.fd", "/usr/share/AAVMF/AAVMF_VARS.ms.fd")
	if _, _, err := FirmwareFiles(config.ArchAArch64, config.BootSecure, all); !errors.As(err, &ce) || !strings.Contains(ce.Accepted, "uefi") {
		t.Errorf("aarch64 secure boot: %v; want a BOOT_MODE error naming uefi", err)
	}
}

func TestForeignArch(t *testing.T) {
	tests := []struct {
		arch, host config.Arch
		foreign    bool
	}{
		{config.ArchX86_64, "", false},
		{config.ArchX86_64, config.ArchX86_64, false},
		{config.ArchAArch64, "", true},
		{config.ArchAArch64, config.ArchX86_64, true},
		{config.ArchAArch64, config.ArchAArch64, false},
		{config.ArchX86_64, config.ArchAArch64, true},
	}
	for _, tc := range tests {
		why := foreignArch(tc.arch, tc.host)
		if (why != "") != tc.foreign || tc.foreign && !strings.Contains(why, "TCG") {
			t.Errorf("foreignArch(%s, host %q) = %q, want foreign %v", tc.arch, tc.host, why, tc.foreign)
		}
	}
}

func TestMachineFor(t *testing.T) {
	tests := []struct {
		arch          config.Arch
		machine, want string
	}{
		{config.ArchX86_64, "q35", "q35"},
		{config.ArchAArch64, "virt", "virt,gic-version=max"},
		{config.ArchAArch64, "virt-7.2", "virt-7.2,gic-version=max"},
		{config.ArchAArch64, "virt,gic-version=3", "virt,gic-version=3"},
		{config.ArchAArch64, "virt,highmem=off", "virt,highmem=off,gic-version=max"},
		{config.ArchAArch64, "virtual-board", "virtual-board"},
	}
	for _, tc := range tests {
		if got := machineFor(tc.arch, tc.machine); got != tc.want {
			t.Errorf("machineFor(%s, %q) = %q, want %q", tc.arch, tc.machine, got, tc.want)
		}
	}
}

func TestResolveDiskCache(t *testing.T) {
	tests := []struct {
		cache, aio string
		direct     bool
		wantCache  string
		wantAIO    string
		warn       bool
	}{
		{"none", "native", true, "none", "native", false},
		{"none", "native", false, "writeback", "threads", true},
		{"none", "threads", false, "writeback", "threads", true},
		{"none", "io_uring", false, "writeback", "io_uring", true},
		{"writeback", "threads", false, "writeback", "threads", false},
		{"unsafe", "io_uring", false, "unsafe", "io_uring", false},
		{"writethrough", "threads", true, "writethrough", "threads", false},
	}
	for _, tc := range tests {
		cache, aio, warn := ResolveDiskCache(tc.cache, tc.aio, tc.direct)
		if cache != tc.wantCache || aio != tc.wantAIO || (warn != "") != tc.warn {
			t.Errorf("ResolveDiskCache(%s, %s, direct %v) = %s, %s, %q; want %s, %s, warning %v",
				tc.cache, tc.aio, tc.direct, cache, aio, warn, tc.wantCache, tc.wantAIO, tc.warn)
		}
		if tc.warn && !strings.Contains(warn, "cache=writeback,aio="+tc.wantAIO) {
			t.Errorf("warning %q does not say what is used instead", warn)
		}
	}
}

func TestDecidePersist(t *testing.T) {
	on, off := true, false
	tests := []struct {
		setting *bool
		mounted bool
		want    bool
	}{
		{nil, true, true},
		{nil, false, false},
		{&on, false, true},
		{&off, true, false},
	}
	for _, tc := range tests {
		if got := DecidePersist(tc.setting, tc.mounted); got != tc.want {
			t.Errorf("DecidePersist(%v, mounted %v) = %v, want %v", tc.setting, tc.mounted, got, tc.want)
		}
	}
}
