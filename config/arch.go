package config

import (
	"runtime"
	"strings"
)

// Arch is a guest architecture, by QEMU's name (ARCH).
type Arch string

const (
	ArchX86_64  Arch = "x86_64"
	ArchAArch64 Arch = "aarch64"
)

// HostArch is the architecture vmrunner runs on, the one KVM runs guests
// of: ARCH's default when no DISTRO entry decides.
func HostArch() Arch {
	if runtime.GOARCH == "arm64" {
		return ArchAArch64
	}
	return ArchX86_64
}

// loadArch reads ARCH (Debian's names amd64 and arm64 too). Unset, it
// stays "": the plan takes the DISTRO entry's architecture, else the
// host's. DISTRO unset then means the default's entry of that
// architecture. MACHINE's and QEMU_BINARY's tags give x86_64's defaults
// for --help; unset, they stay "" for the plan to take the chosen
// architecture's.
func loadArch(c *Config, v string, distroSet bool, host Host, environ map[string]string) error {
	if _, set := environ["MACHINE"]; !set {
		c.Machine = ""
	}
	if _, set := environ["QEMU_BINARY"]; !set {
		c.QEMUBinary = ""
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "":
	case "x86_64", "amd64":
		c.Arch = ArchX86_64
	case "aarch64", "arm64":
		c.Arch = ArchAArch64
	default:
		return &Error{Var: "ARCH", Value: v, Accepted: "x86_64 (or amd64) or aarch64 (or arm64)"}
	}
	arch := c.Arch
	if arch == "" {
		arch = host.Arch
	}
	if c.Boot.Distro != "" && !distroSet && arch == ArchAArch64 {
		c.Boot.Distro = defaultDistro + "-arm64"
	}
	return nil
}
