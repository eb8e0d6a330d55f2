package config

import (
	"errors"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testHost is a fixed machine so that Load is a pure function in tests.
var testHost = Host{
	Hostname:  "testhost",
	HomeDir:   "/home/tester",
	StateHome: "",
	MemoryMiB: 8192,
	CPUs:      8,
}

// load runs Load over a copy of env.
func load(t testing.TB, env map[string]string) (*Config, error) {
	t.Helper()
	return Load(maps.Clone(env), testHost)
}

func mustLoad(t testing.TB, env map[string]string) *Config {
	t.Helper()
	c, err := load(t, env)
	if err != nil {
		t.Fatalf("Load(%v): %v", env, err)
	}
	return c
}

// configErrors returns every *Error in err's tree, in order.
func configErrors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if ce, ok := err.(*Error); ok {
			out = append(out, ce)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// wantError checks that Load failed with a *Error for variable name whose
// value is value and whose message names the variable, the value and what
// is accepted (acceptedPart must occur in Accepted).
func wantError(t *testing.T, env map[string]string, name, value, acceptedPart string) *Error {
	t.Helper()
	c, err := load(t, env)
	if err == nil {
		t.Fatalf("Load(%v) = %+v, want an error for %s", env, c, name)
	}
	if c != nil {
		t.Errorf("Load returned a config together with an error")
	}
	var first *Error
	if !errors.As(err, &first) {
		t.Fatalf("error %v (%T) holds no *config.Error", err, err)
	}
	var ce *Error
	for _, e := range configErrors(err) {
		if e.Var == name {
			ce = e
			break
		}
	}
	if ce == nil {
		t.Fatalf("error %q does not name %s", err, name)
	}
	if ce.Value != value {
		t.Errorf("%s error has Value %q, want %q", name, ce.Value, value)
	}
	if ce.Accepted == "" || !strings.Contains(ce.Accepted, acceptedPart) {
		t.Errorf("%s error has Accepted %q, want it to contain %q", name, ce.Accepted, acceptedPart)
	}
	msg := err.Error()
	for _, part := range []string{name + "=", quote(value), "accepted: " + ce.Accepted} {
		if !strings.Contains(msg, part) {
			t.Errorf("message %q does not contain %q", msg, part)
		}
	}
	return ce
}

func quote(s string) string { return strconv.Quote(s) }

func TestLoadDefaults(t *testing.T) {
	got := mustLoad(t, map[string]string{})
	want := &Config{
		Boot:             BootSource{Distro: "ubuntu-2404"},
		BootMode:         BootUEFI,
		MemoryMiB:        4096,
		CPUs:             2,
		CPUModel:         "host",
		Accel:            AccelAuto,
		RequireKVM:       false,
		DiskSize:         20 << 30,
		DiskBus:          BusVirtio,
		DiskCache:        "none",
		DiskIO:           "native",
		GuestName:        "testhost",
		DataDir:          "/home/tester/.local/state/vmrunner",
		ShutdownTimeout:  30 * time.Second,
		PowerOnAtStart:   true,
		MediaMaxSize:     64 << 30,
		MediaMaxUnpacked: 512 << 30,
		LogFormat:        "",
		Verbose:          false,
		SerialLogMax:     10 << 20,
		Sandbox:          true,
		NICs:             []NIC{{Index: 1, Mode: NetNAT, Model: "virtio-net-pci"}},
		SSHPort:          2222,
		PortFwdAddr:      "0.0.0.0",
		CloudInit:        true,
		GuestUser:        "user",
		VNCPort:          0,
		Hardware:         Hardware{DownloadRetries: 5, RNG: true, TPM: TPMAuto},
		Console:          Console{Graphics: GraphicsNone},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if got.StateDir() != "/home/tester/.local/state/vmrunner/vms/testhost" {
		t.Errorf("StateDir() = %q", got.StateDir())
	}
	if n := got.FirstNAT(); n == nil || n.Index != 1 {
		t.Errorf("FirstNAT() = %+v, want NIC 1", n)
	}
}

// An empty variable counts as unset (docker run -e VAR= is common).
func TestLoadEmptyMeansDefault(t *testing.T) {
	got := mustLoad(t, map[string]string{"MEMORY": "", "CPUS": "", "NETWORK_MODE": "", "DISK_SIZE": "", "SSH_PORT": ""})
	if got.MemoryMiB != 4096 || got.CPUs != 2 || got.DiskSize != 20<<30 || got.SSHPort != 2222 || len(got.NICs) != 1 || got.NICs[0].Mode != NetNAT {
		t.Errorf("empty values did not give the defaults: %+v", got)
	}
}

func TestLoadSerialLogMax(t *testing.T) {
	for in, want := range map[string]int64{"": 10 << 20, "10M": 10 << 20, "1K": 1 << 10, "2GiB": 2 << 30} {
		if got := mustLoad(t, map[string]string{"SERIAL_LOG_MAX": in}).SerialLogMax; got != want {
			t.Errorf("SERIAL_LOG_MAX=%q gave %d, want %d", in, got, want)
		}
	}
}

func TestLoadBooleans(t *testing.T) {
	vals := []struct {
		in   string
		want bool
	}{
		{"1", true}, {"0", false},
		{"true", true}, {"false", false},
		{"yes", true}, {"no", false},
		{"TRUE", true}, {"False", false}, {"YES", true}, {"No", false},
		{" 1 ", true},
	}
	vars := []struct {
		name string
		get  func(*Config) bool
	}{
		{"REQUIRE_KVM", func(c *Config) bool { return c.RequireKVM }},
		{"LOG_VERBOSE", func(c *Config) bool { return c.Verbose }},
		{"CLOUD_INIT", func(c *Config) bool { return c.CloudInit }},
		{"SANDBOX", func(c *Config) bool { return c.Sandbox }},
	}
	for _, v := range vars {
		for _, tc := range vals {
			t.Run(v.name+"="+tc.in, func(t *testing.T) {
				c := mustLoad(t, map[string]string{v.name: tc.in})
				if got := v.get(c); got != tc.want {
					t.Errorf("%s=%q gave %v, want %v", v.name, tc.in, got, tc.want)
				}
			})
		}
		for _, bad := range []string{"2", "on", "off", "y", "n", "enabled", "-1"} {
			t.Run(v.name+"="+bad, func(t *testing.T) {
				wantError(t, map[string]string{v.name: bad}, v.name, bad, "1/0, true/false or yes/no")
			})
		}
	}
}

func TestLoadDiskSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"512M", 512 << 20},
		{"20G", 20 << 30},
		{"1.5T", 3 << 39},
		{"1T", 1 << 40},
		{"64K", 64 << 10},
		{"20g", 20 << 30},
		{"20GB", 20 << 30},
		{"20GiB", 20 << 30},
		{"0.5G", 512 << 20},
		{" 8G ", 8 << 30},
		{"1.0000001G", 1 << 30}, // rounded down to whole sectors
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			c := mustLoad(t, map[string]string{"DISK_SIZE": tc.in})
			if c.DiskSize != tc.want {
				t.Errorf("DISK_SIZE=%q gave %d, want %d", tc.in, c.DiskSize, tc.want)
			}
			if c.DiskSize%512 != 0 {
				t.Errorf("DISK_SIZE=%q gave %d, not whole sectors", tc.in, c.DiskSize)
			}
		})
	}
	for _, bad := range []string{"20", "1024", "G", "-1G", "0G", "0M", "2E", "2P", "abc", "20 G", "20X", "1.5", "InfG", "B", "iB", "2000000000T"} {
		t.Run("bad "+bad, func(t *testing.T) {
			wantError(t, map[string]string{"DISK_SIZE": bad}, "DISK_SIZE", bad, "a size with a unit")
		})
	}
}

func TestLoadMemory(t *testing.T) {
	tests := []struct {
		in   string
		host int
		want int
	}{
		{"4096", 8192, 4096},
		{"64", 8192, 64},
		{"100000", 8192, 100000}, // more than the host has: QEMU's concern
		{"2G", 8192, 2048},
		{"512M", 8192, 512},
		{"1.5G", 8192, 1536},
		{"2GiB", 8192, 2048},
		{"max", 8192, 7680}, // less 512 MiB for QEMU, as the seed project
		{"MAX", 8192, 7680},
		{"half", 8192, 4096},
		{"Half", 1001, 500},
		{" 1024 ", 8192, 1024},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			h := testHost
			h.MemoryMiB = tc.host
			c, err := Load(map[string]string{"MEMORY": tc.in}, h)
			if err != nil {
				t.Fatal(err)
			}
			if c.MemoryMiB != tc.want {
				t.Errorf("MEMORY=%q (host %d MiB) gave %d, want %d", tc.in, tc.host, c.MemoryMiB, tc.want)
			}
		})
	}
	bad := []struct {
		in   string
		host int
	}{
		{"63", 8192}, {"0", 8192}, {"-4096", 8192}, {"abc", 8192}, {"2X", 8192},
		{"32M", 8192}, {"max", 0}, {"half", 100}, {"4096.5", 8192}, {"4 096", 8192},
	}
	for _, tc := range bad {
		t.Run("bad "+tc.in, func(t *testing.T) {
			h := testHost
			h.MemoryMiB = tc.host
			_, err := Load(map[string]string{"MEMORY": tc.in}, h)
			var ce *Error
			if !errors.As(err, &ce) || ce.Var != "MEMORY" || ce.Value != tc.in || !strings.Contains(ce.Accepted, "max or half") {
				t.Errorf("MEMORY=%q (host %d MiB): error %v, want a MEMORY *Error", tc.in, tc.host, err)
			}
		})
	}
}

func TestLoadCPUs(t *testing.T) {
	tests := []struct {
		in   string
		host int
		want int
	}{
		{"1", 8, 1},
		{"2", 8, 2},
		{"255", 8, 255},
		{"max", 8, 8},
		{"MAX", 12, 12},
		{"half", 8, 4},
		{"half", 3, 1},
		{"half", 1, 1},
		{" 4 ", 8, 4},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			h := testHost
			h.CPUs = tc.host
			c, err := Load(map[string]string{"CPUS": tc.in}, h)
			if err != nil {
				t.Fatal(err)
			}
			if c.CPUs != tc.want {
				t.Errorf("CPUS=%q (host %d) gave %d, want %d", tc.in, tc.host, c.CPUs, tc.want)
			}
		})
	}
	bad := []struct {
		in   string
		host int
	}{
		{"0", 8}, {"-1", 8}, {"256", 8}, {"1.5", 8}, {"two", 8}, {"max", 0},
	}
	for _, tc := range bad {
		t.Run("bad "+tc.in, func(t *testing.T) {
			h := testHost
			h.CPUs = tc.host
			_, err := Load(map[string]string{"CPUS": tc.in}, h)
			var ce *Error
			if !errors.As(err, &ce) || ce.Var != "CPUS" || ce.Value != tc.in || !strings.Contains(ce.Accepted, "max or half") {
				t.Errorf("CPUS=%q (host %d): error %v, want a CPUS *Error", tc.in, tc.host, err)
			}
		})
	}
}

func TestLoadChoices(t *testing.T) {
	tests := []struct {
		env   map[string]string
		check func(*Config) bool
	}{
		{map[string]string{"BOOT_MODE": "legacy"}, func(c *Config) bool { return c.BootMode == BootLegacy }},
		{map[string]string{"BOOT_MODE": "SECURE"}, func(c *Config) bool { return c.BootMode == BootSecure }},
		{map[string]string{"ACCEL": "KVM"}, func(c *Config) bool { return c.Accel == AccelKVM }},
		{map[string]string{"ACCEL": "tcg"}, func(c *Config) bool { return c.Accel == AccelTCG }},
		{map[string]string{"REQUIRE_KVM": "1", "ACCEL": "kvm"}, func(c *Config) bool { return c.RequireKVM && c.Accel == AccelKVM }},
		{map[string]string{"CPU_MODEL": "Skylake-Server,+vmx"}, func(c *Config) bool { return c.CPUModel == "Skylake-Server,+vmx" }},
		{map[string]string{"MACHINE": "pc-q35-7.2"}, func(c *Config) bool { return c.Machine == "pc-q35-7.2" }},
		{map[string]string{"SHUTDOWN_TIMEOUT": "0"}, func(c *Config) bool { return c.ShutdownTimeout == 0 }},
		{map[string]string{"SHUTDOWN_TIMEOUT": "86400"}, func(c *Config) bool { return c.ShutdownTimeout == 24*time.Hour }},
		{map[string]string{"LOG_FORMAT": "JSON"}, func(c *Config) bool { return c.LogFormat == "json" }},
		{map[string]string{"LOG_FORMAT": "console"}, func(c *Config) bool { return c.LogFormat == "console" }},
		{map[string]string{"EXTRA_ARGS": `-device "virtio-balloon-pci,id=b 0" -no-reboot`}, func(c *Config) bool {
			return slices.Equal(c.ExtraArgs, []string{"-device", "virtio-balloon-pci,id=b 0", "-no-reboot"})
		}},
		{map[string]string{"QEMU_BINARY": "/opt/qemu/bin/qemu"}, func(c *Config) bool { return c.QEMUBinary == "/opt/qemu/bin/qemu" }},
		{map[string]string{"PORT_FWD_ADDR": "127.0.0.1"}, func(c *Config) bool { return c.PortFwdAddr == "127.0.0.1" }},
		{map[string]string{"GUEST_USER": "ops_1"}, func(c *Config) bool { return c.GuestUser == "ops_1" }},
		{map[string]string{"SSH_PUBKEY": "  ssh-ed25519 AAAAC3Nz me@host \n"}, func(c *Config) bool { return c.SSHPubKey == "ssh-ed25519 AAAAC3Nz me@host" }},
		{map[string]string{"GRAPHICS": "vnc"}, func(c *Config) bool { return c.VNCPort == 5900 }},
		{map[string]string{"GRAPHICS": "VNC", "VNC_PORT": "5907"}, func(c *Config) bool { return c.VNCPort == 5907 }},
		{map[string]string{"GRAPHICS": "none", "VNC_PORT": "1"}, func(c *Config) bool { return c.VNCPort == 0 }},
		{map[string]string{"REDFISH_ENABLE": "no"}, func(c *Config) bool { return !c.KeepAlive }},
		{map[string]string{"REDFISH_ENABLE": "1", "REDFISH_PASSWORD": "a-long-secret"}, func(c *Config) bool { return c.KeepAlive }},
		{map[string]string{"REDFISH_ENABLE": "1", "REDFISH_PASSWORD": "a-long-secret", "KEEP_ALIVE_AFTER_VM_STOP": "0"}, func(c *Config) bool { return !c.KeepAlive }},
		{map[string]string{"KEEP_ALIVE_AFTER_VM_STOP": "1"}, func(c *Config) bool { return c.KeepAlive }},
		{map[string]string{"DOWNLOAD_MAX_SIZE": "1G", "EXTRACT_MAX_SIZE": "2G"}, func(c *Config) bool { return c.MediaMaxSize == 1<<30 && c.MediaMaxUnpacked == 2<<30 }},
		{map[string]string{"SSH_PORT": "22"}, func(c *Config) bool { return c.SSHPort == 22 }},
		{map[string]string{"SSH_PORT": "65535"}, func(c *Config) bool { return c.SSHPort == 65535 }},
		{map[string]string{"SSH_PORT": "0"}, func(c *Config) bool { return c.SSHPort == 0 }},
		{map[string]string{"SSH_PORT": "0", "PORT_FWD": "2222:22"}, func(c *Config) bool { return c.SSHPort == 0 && c.PortFwds[0].HostPort == 2222 }},
		{map[string]string{"DISK_TYPE": "SCSI"}, func(c *Config) bool { return c.DiskBus == BusSCSI }},
		{map[string]string{"DISK_TYPE": "nvme"}, func(c *Config) bool { return c.DiskBus == BusNVMe }},
		{map[string]string{"DISK_TYPE": "ide"}, func(c *Config) bool { return c.DiskBus == BusIDE }},
		{map[string]string{"DISK_CACHE": "writeback"}, func(c *Config) bool { return c.DiskCache == "writeback" && c.DiskIO == "threads" }},
		{map[string]string{"DISK_CACHE": "Unsafe", "DISK_IO": "io_uring"}, func(c *Config) bool { return c.DiskCache == "unsafe" && c.DiskIO == "io_uring" }},
		{map[string]string{"DISK_CACHE": "writethrough", "DISK_IO": "threads"}, func(c *Config) bool { return c.DiskCache == "writethrough" && c.DiskIO == "threads" }},
		{map[string]string{"DISK_IO": "threads"}, func(c *Config) bool { return c.DiskCache == "none" && c.DiskIO == "threads" }},
		{map[string]string{"DISK_IO": "native", "DISK_CACHE": "none"}, func(c *Config) bool { return c.DiskIO == "native" }},
		{map[string]string{"PERSIST": "yes"}, func(c *Config) bool { return c.Persist != nil && *c.Persist }},
		{map[string]string{"PERSIST": "0"}, func(c *Config) bool { return c.Persist != nil && !*c.Persist }},
		{map[string]string{"PERSIST": ""}, func(c *Config) bool { return c.Persist == nil }},
		{map[string]string{"DISK2_SIZE": "1G", "DISK6_SIZE": "512M"}, func(c *Config) bool {
			return slices.Equal(c.ExtraDisks, []ExtraDisk{{2, 1 << 30}, {6, 512 << 20}})
		}},
	}
	for _, tc := range tests {
		t.Run(envName(tc.env), func(t *testing.T) {
			c := mustLoad(t, tc.env)
			if !tc.check(c) {
				t.Errorf("Load(%v) = %+v", tc.env, c)
			}
		})
	}
}

func envName(env map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		parts = append(parts, k+"="+env[k])
	}
	return strings.Join(parts, ",")
}

// TestLoadBadValues checks each variable's refusal: an *Error that names
// the variable, the value and what is accepted.
func TestLoadBadValues(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		env      map[string]string
		name     string // variable the error must name
		value    string // value the error must quote
		accepted string // part of Accepted
	}{
		{map[string]string{"BOOT_MODE": "bios"}, "BOOT_MODE", "bios", "uefi, legacy or secure"},
		{map[string]string{"BOOT_FROM": "https://example.com/x.img", "BOOT_FROM_SHA256": "abc"}, "BOOT_FROM_SHA256", "abc", "64 hex digits"},
		{map[string]string{"BOOT_FROM": "blank", "BOOT_FROM_SHA256": strings.Repeat("a", 64)}, "BOOT_FROM_SHA256", strings.Repeat("a", 64), "http(s) BOOT_FROM"},
		{map[string]string{"BOOT_FROM": "http://example.com/x.img"}, "BOOT_FROM", "http://example.com/x.img", "https URL, or an http URL together with BOOT_FROM_SHA256"},
		{map[string]string{"BOOT_FROM": "https://example.com/x.img", "BOOT_FROM_FORMAT": "qcow3"}, "BOOT_FROM_FORMAT", "qcow3", "raw, qcow2, vmdk, vhdx, vpc, vdi or iso"},
		{map[string]string{"BOOT_FROM": "blank", "BOOT_FROM_FORMAT": "raw"}, "BOOT_FROM_FORMAT", "raw", "only together with BOOT_FROM"},
		{map[string]string{"DISTRO": "debian-12", "BOOT_FROM_FORMAT": "qcow2"}, "BOOT_FROM_FORMAT", "qcow2", "only together with BOOT_FROM"},
		{map[string]string{"BOOT_FROM": "https://example.com/x.img", "DOWNLOAD_MAX_SIZE": "lots"}, "DOWNLOAD_MAX_SIZE", "lots", "a size with a unit"},
		{map[string]string{"BOOT_FROM": "https://example.com/x.img", "EXTRACT_MAX_SIZE": "0G"}, "EXTRACT_MAX_SIZE", "0G", "a size with a unit"},
		{map[string]string{"BOOT_FROM": dir}, "BOOT_FROM", dir, "image"},
		{map[string]string{"INITRD": filepath.Join(dir, "initrd")}, "INITRD", filepath.Join(dir, "initrd"), "only together with KERNEL"},
		{map[string]string{"KERNEL_CMDLINE": "console=ttyS0"}, "KERNEL_CMDLINE", "console=ttyS0", "only together with KERNEL"},
		{map[string]string{"MEMORY": "lots"}, "MEMORY", "lots", "MiB"},
		{map[string]string{"CPUS": "many"}, "CPUS", "many", "1 to 255"},
		{map[string]string{"CPU_MODEL": "host cpu"}, "CPU_MODEL", "host cpu", "-cpu model"},
		{map[string]string{"CPU_MODEL": "-x"}, "CPU_MODEL", "-x", "-cpu model"},
		{map[string]string{"MACHINE": "q35 -snapshot"}, "MACHINE", "q35 -snapshot", "-machine type"},
		{map[string]string{"ACCEL": "hvf"}, "ACCEL", "hvf", "auto, kvm or tcg"},
		{map[string]string{"ACCEL": "tcg", "REQUIRE_KVM": "1"}, "ACCEL", "tcg", "REQUIRE_KVM=1"},
		{map[string]string{"REQUIRE_KVM": "sure"}, "REQUIRE_KVM", "sure", "yes/no"},
		{map[string]string{"DISK_SIZE": "20"}, "DISK_SIZE", "20", "with a unit"},
		{map[string]string{"GUEST_NAME": "my_vm"}, "GUEST_NAME", "my_vm", "letters, digits"},
		{map[string]string{"GUEST_NAME": "-vm"}, "GUEST_NAME", "-vm", "letters, digits"},
		{map[string]string{"GUEST_NAME": "vm-"}, "GUEST_NAME", "vm-", "letters, digits"},
		{map[string]string{"GUEST_NAME": "a/b"}, "GUEST_NAME", "a/b", "letters, digits"},
		{map[string]string{"GUEST_NAME": strings.Repeat("a", 64)}, "GUEST_NAME", strings.Repeat("a", 64), "1-63"},
		{map[string]string{"DATA_DIR": "data"}, "DATA_DIR", "data", "absolute"},
		{map[string]string{"DATA_DIR": "./data"}, "DATA_DIR", "./data", "absolute"},
		{map[string]string{"SHUTDOWN_TIMEOUT": "-1"}, "SHUTDOWN_TIMEOUT", "-1", "0 to 86400"},
		{map[string]string{"SHUTDOWN_TIMEOUT": "86401"}, "SHUTDOWN_TIMEOUT", "86401", "0 to 86400"},
		{map[string]string{"SHUTDOWN_TIMEOUT": "30s"}, "SHUTDOWN_TIMEOUT", "30s", "whole seconds"},
		{map[string]string{"EXTRA_ARGS": `-append "console=ttyS0`}, "EXTRA_ARGS", `-append "console=ttyS0`, "shell-quoted"},
		{map[string]string{"EXTRA_ARGS": `-no-reboot \`}, "EXTRA_ARGS", `-no-reboot \`, "shell-quoted"},
		{map[string]string{"LOG_FORMAT": "text"}, "LOG_FORMAT", "text", "console or json"},
		{map[string]string{"LOG_VERBOSE": "debug"}, "LOG_VERBOSE", "debug", "yes/no"},
		{map[string]string{"SERIAL_LOG_MAX": "10"}, "SERIAL_LOG_MAX", "10", "with a unit"},
		{map[string]string{"SANDBOX": "off"}, "SANDBOX", "off", "yes/no"},
		{map[string]string{"QEMU_USER": "qemu user"}, "QEMU_USER", "qemu user", "uid:gid"},
		{map[string]string{"QEMU_USER": "1000:"}, "QEMU_USER", "1000:", "uid:gid"},
		{map[string]string{"QEMU_USER": "-x"}, "QEMU_USER", "-x", "uid:gid"},
		{map[string]string{"SERIAL_LOG_MAX": "huge"}, "SERIAL_LOG_MAX", "huge", "with a unit"},
		{map[string]string{"SSH_PORT": "-1"}, "SSH_PORT", "-1", "1 to 65535, or 0"},
		{map[string]string{"SSH_PORT": "65536"}, "SSH_PORT", "65536", "1 to 65535"},
		{map[string]string{"SSH_PORT": "ssh"}, "SSH_PORT", "ssh", "1 to 65535"},
		{map[string]string{"PORT_FWD": "8080"}, "PORT_FWD", "8080", "host:guest"},
		{map[string]string{"PORT_FWD_ADDR": "::1"}, "PORT_FWD_ADDR", "::1", "IPv4"},
		{map[string]string{"PORT_FWD_ADDR": "localhost"}, "PORT_FWD_ADDR", "localhost", "IPv4"},
		{map[string]string{"CLOUD_INIT": "off"}, "CLOUD_INIT", "off", "yes/no"},
		{map[string]string{"GUEST_USER": "root"}, "GUEST_USER", "root", "other than root"},
		{map[string]string{"GUEST_USER": "Admin"}, "GUEST_USER", "Admin", "lower-case"},
		{map[string]string{"GUEST_USER": "1user"}, "GUEST_USER", "1user", "not starting with a digit"},
		{map[string]string{"SSH_PUBKEY": "AAAAC3Nz"}, "SSH_PUBKEY", "AAAAC3Nz", "TYPE BASE64"},
		{map[string]string{"SSH_PUBKEY": "ssh-ed25519 AAAA a\nssh-rsa BBBB b"}, "SSH_PUBKEY", "ssh-ed25519 AAAA a\nssh-rsa BBBB b", "one OpenSSH public key line"},
		{map[string]string{"CLOUD_INIT_USER_DATA": filepath.Join(dir, "missing.yaml")}, "CLOUD_INIT_USER_DATA", filepath.Join(dir, "missing.yaml"), "readable"},
		{map[string]string{"GRAPHICS": "sdl"}, "GRAPHICS", "sdl", "none, vnc or novnc"},
		{map[string]string{"GRAPHICS": "vnc", "VNC_PORT": "5899"}, "VNC_PORT", "5899", "5900 to 65535"},
		{map[string]string{"GRAPHICS": "vnc", "VNC_PORT": "70000"}, "VNC_PORT", "70000", "1 to 65535"},
		{map[string]string{"REDFISH_ENABLE": "maybe"}, "REDFISH_ENABLE", "maybe", "yes/no"},
		{map[string]string{"NETWORK_MODE": "host"}, "NETWORK_MODE", "host", "nat, bridge, direct, container or none"},
		{map[string]string{"NETWORK_MODE": "bridge", "NETWORK_BRIDGE": "bridge-name-too-long"}, "NETWORK_BRIDGE", "bridge-name-too-long", "interface name"},
		{map[string]string{"NETWORK_MODE": "bridge", "NETWORK_BRIDGE": "br 0"}, "NETWORK_BRIDGE", "br 0", "interface name"},
		{map[string]string{"NETWORK_MODE": "direct", "NETWORK_DIRECT_DEV": "eth0,x"}, "NETWORK_DIRECT_DEV", "eth0,x", "interface name"},
		{map[string]string{"NETWORK_MODEL": "virtio-blk"}, "NETWORK_MODEL", "virtio-blk", "virtio, e1000"},
		{map[string]string{"NETWORK_MAC": "01:00:5e:00:00:01"}, "NETWORK_MAC", "01:00:5e:00:00:01", "unicast"},
		{map[string]string{"NETWORK_MTU": "67"}, "NETWORK_MTU", "67", "68 to 65535"},
		{map[string]string{"NETWORK2_MODE": "tap"}, "NETWORK2_MODE", "tap", "nat, bridge, direct, container or none"},
		{map[string]string{"NETWORK2_MODE": "nat", "NETWORK2_MODEL": "foo"}, "NETWORK2_MODEL", "foo", "virtio"},
		{map[string]string{"DISK_TYPE": "sata"}, "DISK_TYPE", "sata", "virtio, scsi, nvme, ide or usb"},
		{map[string]string{"DISK_CACHE": "direct"}, "DISK_CACHE", "direct", "none, writeback, writethrough, directsync or unsafe"},
		{map[string]string{"DISK_IO": "aio"}, "DISK_IO", "aio", "native, threads or io_uring"},
		{map[string]string{"DISK_IO": "native", "DISK_CACHE": "writeback"}, "DISK_IO", "native", "native needs DISK_CACHE=none"},
		{map[string]string{"PERSIST": "always"}, "PERSIST", "always", "yes/no"},
		{map[string]string{"DISK2_SIZE": "10"}, "DISK2_SIZE", "10", "with a unit"},
		{map[string]string{"DISK6_SIZE": "-1G"}, "DISK6_SIZE", "-1G", "with a unit"},
		{map[string]string{"DISK1_SIZE": "1G"}, "DISK1_SIZE", "1G", "DISK2_SIZE to DISK6_SIZE"},
		{map[string]string{"DISK7_SIZE": "1G"}, "DISK7_SIZE", "1G", "DISK2_SIZE to DISK6_SIZE"},
		{map[string]string{"DISK02_SIZE": "1G"}, "DISK02_SIZE", "1G", "DISK2_SIZE to DISK6_SIZE"},
		{map[string]string{"DEVICE1": "/dev/null"}, "DEVICE1", "/dev/null", "DEVICE2 to DEVICE6"},
		{map[string]string{"DEVICE7": "/dev/null"}, "DEVICE7", "/dev/null", "DEVICE2 to DEVICE6"},
		{map[string]string{"DEVICE": filepath.Join(dir, "missing")}, "DEVICE", filepath.Join(dir, "missing"), "block device or regular file"},
		{map[string]string{"DEVICE": dir}, "DEVICE", dir, "block device or regular file"},
		{map[string]string{"DEVICE3": "/dev/null"}, "DEVICE3", "/dev/null", "block device or regular file"},
	}
	for _, tc := range tests {
		t.Run(envName(tc.env), func(t *testing.T) {
			wantError(t, tc.env, tc.name, tc.value, tc.accepted)
		})
	}
}

func TestErrorMessage(t *testing.T) {
	e := &Error{Var: "MEMORY", Value: "lots", Accepted: "MiB"}
	if got, want := e.Error(), `MEMORY="lots": accepted: MiB`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	cause := fs.ErrNotExist
	e = &Error{Var: "KERNEL", Value: "/k", Accepted: "a readable kernel image", Err: cause}
	if got, want := e.Error(), `KERNEL="/k": file does not exist; accepted: a readable kernel image`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(e, fs.ErrNotExist) {
		t.Errorf("Unwrap does not reach the cause")
	}
}

func TestLoadJoinsAllErrors(t *testing.T) {
	env := map[string]string{
		"MEMORY":        "lots",
		"CPUS":          "0",
		"BOOT_MODE":     "bios",
		"NETWORK_MODE":  "host",
		"NETWORK2_MODE": "nat",
		"NETWORK2_MAC":  "ff:ff:ff:ff:ff:ff",
		"SSH_PORT":      "-1",
		"GRAPHICS":      "sdl",
		"CLOUD_INIT":    "maybe",
		"NETWORK9_MODE": "nat",
	}
	_, err := load(t, env)
	if err == nil {
		t.Fatal("Load accepted bad values")
	}
	var names []string
	for _, e := range configErrors(err) {
		names = append(names, e.Var)
	}
	slices.Sort(names)
	want := []string{"BOOT_MODE", "CLOUD_INIT", "CPUS", "GRAPHICS", "MEMORY", "NETWORK2_MAC", "NETWORK9_MODE", "NETWORK_MODE", "SSH_PORT"}
	if !slices.Equal(names, want) {
		t.Errorf("errors name %q, want %q", names, want)
	}
	msg := err.Error()
	for _, v := range want {
		if !strings.Contains(msg, v+"=") {
			t.Errorf("message does not name %s:\n%s", v, msg)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != len(want) {
		t.Errorf("message has %d lines, want one per error (%d):\n%s", n, len(want), msg)
	}
}

func TestLoadNICs(t *testing.T) {
	nat1 := NIC{Index: 1, Mode: NetNAT, Model: "virtio-net-pci"}
	tests := []struct {
		name string
		env  map[string]string
		want []NIC
	}{
		{"default", map[string]string{}, []NIC{nat1}},
		{"bridge default br0", map[string]string{"NETWORK_MODE": "bridge"},
			[]NIC{{Index: 1, Mode: NetBridge, Bridge: "br0", Model: "virtio-net-pci"}}},
		{"direct default eth0", map[string]string{"NETWORK_MODE": "DIRECT"},
			[]NIC{{Index: 1, Mode: NetDirect, DirectDev: "eth0", Model: "virtio-net-pci"}}},
		{"bridge named", map[string]string{"NETWORK_MODE": "bridge", "NETWORK_BRIDGE": "br-lan", "NETWORK_DIRECT_DEV": "ignored"},
			[]NIC{{Index: 1, Mode: NetBridge, Bridge: "br-lan", Model: "virtio-net-pci"}}},
		{"direct named", map[string]string{"NETWORK_MODE": "direct", "NETWORK_DIRECT_DEV": "enp3s0.100"},
			[]NIC{{Index: 1, Mode: NetDirect, DirectDev: "enp3s0.100", Model: "virtio-net-pci"}}},
		{"models", map[string]string{"NETWORK_MODEL": "E1000", "NETWORK2_MODE": "nat", "NETWORK2_MODEL": "virtio-net-pci", "NETWORK3_MODE": "nat", "NETWORK3_MODEL": "rtl8139"},
			[]NIC{{Index: 1, Mode: NetNAT, Model: "e1000"}, {Index: 2, Mode: NetNAT, Model: "virtio-net-pci"}, {Index: 3, Mode: NetNAT, Model: "rtl8139"}}},
		{"second bridge", map[string]string{"NETWORK2_MODE": "bridge"},
			[]NIC{nat1, {Index: 2, Mode: NetBridge, Bridge: "br0", Model: "virtio-net-pci"}}},
		{"gap", map[string]string{"NETWORK3_MODE": "direct", "NETWORK3_DIRECT_DEV": "eth1"},
			[]NIC{nat1, {Index: 3, Mode: NetDirect, DirectDev: "eth1", Model: "virtio-net-pci"}}},
		{"eighth", map[string]string{"NETWORK8_MODE": "nat", "NETWORK8_MTU": "9000"},
			[]NIC{nat1, {Index: 8, Mode: NetNAT, Model: "virtio-net-pci", MTU: 9000}}},
		{"empty mode is nat", map[string]string{"NETWORK2_MODE": ""},
			[]NIC{nat1, {Index: 2, Mode: NetNAT, Model: "virtio-net-pci"}}},
		{"mode none dropped", map[string]string{"NETWORK2_MODE": "none", "NETWORK3_MODE": "nat"},
			[]NIC{nat1, {Index: 3, Mode: NetNAT, Model: "virtio-net-pci"}}},
		{"first none", map[string]string{"NETWORK_MODE": "none", "NETWORK2_MODE": "nat"},
			[]NIC{{Index: 2, Mode: NetNAT, Model: "virtio-net-pci"}}},
		{"all none", map[string]string{"NETWORK_MODE": "None"}, nil},
		{"mac and mtu", map[string]string{"NETWORK_MAC": "52-54-00-AB-CD-EF", "NETWORK_MTU": "1400"},
			[]NIC{{Index: 1, Mode: NetNAT, Model: "virtio-net-pci", MAC: net.HardwareAddr{0x52, 0x54, 0, 0xab, 0xcd, 0xef}, MTU: 1400}}},
		{"all eight", map[string]string{"NETWORK2_MODE": "nat", "NETWORK3_MODE": "nat", "NETWORK4_MODE": "nat", "NETWORK5_MODE": "nat", "NETWORK6_MODE": "nat", "NETWORK7_MODE": "nat", "NETWORK8_MODE": "nat"},
			func() []NIC {
				var n []NIC
				for i := 1; i <= 8; i++ {
					n = append(n, NIC{Index: i, Mode: NetNAT, Model: "virtio-net-pci"})
				}
				return n
			}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.env)
			if !reflect.DeepEqual(c.NICs, tc.want) {
				t.Errorf("NICs:\n got %+v\nwant %+v", c.NICs, tc.want)
			}
			for _, n := range c.NICs {
				want := "NETWORK_"
				if n.Index > 1 {
					want = "NETWORK" + string(rune('0'+n.Index)) + "_"
				}
				if n.Prefix() != want {
					t.Errorf("NIC %d Prefix() = %q, want %q", n.Index, n.Prefix(), want)
				}
			}
		})
	}
}

func TestLoadNICVariableNames(t *testing.T) {
	tests := []struct {
		key, value, accepted string
	}{
		{"NETWORK9_MODE", "nat", "NETWORK2_* to NETWORK8_*"},
		{"NETWORK1_MODE", "nat", "NETWORK2_* to NETWORK8_*"},
		{"NETWORK0_MODE", "nat", "NETWORK2_* to NETWORK8_*"},
		{"NETWORK02_MODE", "nat", "NETWORK2_* to NETWORK8_*"},
		{"NETWORK10_MAC", "52:54:00:00:00:01", "NETWORK2_* to NETWORK8_*"},
		{"NETWORK99999999999999999999_MODE", "nat", "NETWORK2_* to NETWORK8_*"},
		{"NETWORK3_MAC", "52:54:00:00:00:01", "only together with NETWORK3_MODE"},
		{"NETWORK2_BRIDGE", "br1", "only together with NETWORK2_MODE"},
		{"NETWORK8_MTU", "1400", "only together with NETWORK8_MODE"},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			wantError(t, map[string]string{tc.key: tc.value}, tc.key, tc.value, tc.accepted)
		})
	}
	// Names that merely look alike are not NIC variables.
	for _, k := range []string{"NETWORKX_MODE", "NETWORK_FOO", "MY_NETWORK2_MODE", "NETWORK2MODE"} {
		t.Run("ignored "+k, func(t *testing.T) {
			c := mustLoad(t, map[string]string{k: "x"})
			if len(c.NICs) != 1 {
				t.Errorf("%s changed the NICs: %+v", k, c.NICs)
			}
		})
	}
}

func TestLoadMAC(t *testing.T) {
	good := map[string]net.HardwareAddr{
		"52:54:00:12:34:56": {0x52, 0x54, 0x00, 0x12, 0x34, 0x56},
		"52:54:00:AB:CD:EF": {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef},
		"02-00-00-00-00-01": {0x02, 0, 0, 0, 0, 0x01},
		"0200.0000.0002":    {0x02, 0, 0, 0, 0, 0x02},
		"00:16:3e:00:00:01": {0x00, 0x16, 0x3e, 0, 0, 0x01},
	}
	for in, want := range good {
		t.Run(in, func(t *testing.T) {
			c := mustLoad(t, map[string]string{"NETWORK2_MODE": "nat", "NETWORK2_MAC": in})
			if got := c.NICs[1].MAC; !slices.Equal(got, want) {
				t.Errorf("NETWORK2_MAC=%q gave %v, want %v", in, got, want)
			}
		})
	}
	for _, bad := range []string{
		"01:00:5e:00:00:01",       // IPv4 multicast
		"33:33:00:00:00:01",       // IPv6 multicast
		"ff:ff:ff:ff:ff:ff",       // broadcast
		"53:54:00:12:34:56",       // group bit set
		"52:54:00:12:34",          // short
		"52:54:00:12:34:56:78:9a", // EUI-64
		"zz:54:00:12:34:56",
		"52:54:00:12:34:56:",
	} {
		t.Run("bad "+bad, func(t *testing.T) {
			wantError(t, map[string]string{"NETWORK_MAC": bad}, "NETWORK_MAC", bad, "unicast MAC")
		})
	}
}

func TestLoadMTU(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{{"68", 68}, {"576", 576}, {"1500", 1500}, {"9000", 9000}, {"65535", 65535}} {
		t.Run(tc.in, func(t *testing.T) {
			c := mustLoad(t, map[string]string{"NETWORK_MTU": tc.in})
			if c.NICs[0].MTU != tc.want {
				t.Errorf("NETWORK_MTU=%q gave %d", tc.in, c.NICs[0].MTU)
			}
		})
	}
	for _, bad := range []string{"0", "67", "65536", "-1500", "1500.0", "jumbo"} {
		t.Run("bad "+bad, func(t *testing.T) {
			wantError(t, map[string]string{"NETWORK_MTU": bad}, "NETWORK_MTU", bad, "68 to 65535")
			wantError(t, map[string]string{"NETWORK4_MODE": "nat", "NETWORK4_MTU": bad}, "NETWORK4_MTU", bad, "68 to 65535")
		})
	}
}

func TestParsePortFwd(t *testing.T) {
	tests := []struct {
		in   string
		want []PortFwd
	}{
		{"", nil},
		{" , ,", nil},
		{"8080:80", []PortFwd{{TCP, 8080, 80}}},
		{"8080:80/tcp", []PortFwd{{TCP, 8080, 80}}},
		{"5353:53/udp", []PortFwd{{UDP, 5353, 53}}},
		{"5353:53/UDP", []PortFwd{{UDP, 5353, 53}}},
		{"8080:80,5353:53/udp", []PortFwd{{TCP, 8080, 80}, {UDP, 5353, 53}}},
		{" 8080 : 80 , 5353:53/udp ,", []PortFwd{{TCP, 8080, 80}, {UDP, 5353, 53}}},
		{"1:65535,65535:1", []PortFwd{{TCP, 1, 65535}, {TCP, 65535, 1}}},
		{"8080:80,,8443:443", []PortFwd{{TCP, 8080, 80}, {TCP, 8443, 443}}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePortFwd(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ParsePortFwd(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
	bad := []struct{ in, item string }{
		{"8080", "8080"},
		{"8080:", "8080:"},
		{":80", ":80"},
		{"8080:80/sctp", "8080:80/sctp"},
		{"8080:80/", "8080:80/"},
		{"8080:80/udp/tcp", "8080:80/udp/tcp"},
		{"0:80", "0:80"},
		{"8080:0", "8080:0"},
		{"8080:65536", "8080:65536"},
		{"a:b", "a:b"},
		{"8080:80:90", "8080:80:90"},
		{"8080-8090:80", "8080-8090:80"},
		{"8080:80,22", "22"},
		{"8080:80;9090:90", "8080:80;9090:90"},
	}
	for _, tc := range bad {
		t.Run("bad "+tc.in, func(t *testing.T) {
			got, err := ParsePortFwd(tc.in)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("ParsePortFwd(%q) = %v, %v; want a *config.Error", tc.in, got, err)
			}
			if ce.Var != "PORT_FWD" || ce.Value != tc.in || !strings.Contains(ce.Accepted, "host:guest") {
				t.Errorf("error %+v", ce)
			}
			if !strings.Contains(err.Error(), `item "`+tc.item+`"`) {
				t.Errorf("error %q does not name the bad item %q", err, tc.item)
			}
		})
	}
	// Through Load, with the value as the user wrote it.
	c := mustLoad(t, map[string]string{"PORT_FWD": "8080:80, 5353:53/udp"})
	if want := []PortFwd{{TCP, 8080, 80}, {UDP, 5353, 53}}; !slices.Equal(c.PortFwds, want) {
		t.Errorf("Load PortFwds = %v, want %v", c.PortFwds, want)
	}
	wantError(t, map[string]string{"PORT_FWD": "8080:80, 99999:1"}, "PORT_FWD", "8080:80, 99999:1", "host:guest")
}

func TestLoadPortCollisions(t *testing.T) {
	ok := []map[string]string{
		{"PORT_FWD": "2222:22/udp"},                      // same port, other protocol
		{"PORT_FWD": "8080:80,8080:80/udp"},              // same
		{"PORT_FWD": "8080:22,8081:22"},                  // one guest port twice is fine
		{"SSH_PORT": "5900", "VNC_PORT": "5900"},         // no VNC, no listener
		{"GRAPHICS": "vnc", "PORT_FWD": "5900:5900/udp"}, // VNC is tcp
		{"NETWORK_MODE": "bridge", "NETWORK2_MODE": "nat", "PORT_FWD": "8080:80"},
		{"NETWORK_MODE": "none", "GRAPHICS": "vnc", "SSH_PORT": "5900"},
	}
	for _, env := range ok {
		t.Run(envName(env), func(t *testing.T) { mustLoad(t, env) })
	}
	bad := []struct {
		env              map[string]string
		name, value, acc string
	}{
		{map[string]string{"PORT_FWD": "2222:22"}, "PORT_FWD", "2222:22/tcp", "SSH_PORT"},
		{map[string]string{"SSH_PORT": "8080", "PORT_FWD": "8080:80"}, "PORT_FWD", "8080:80/tcp", "SSH_PORT"},
		{map[string]string{"PORT_FWD": "8080:80,8080:81"}, "PORT_FWD", "8080:81/tcp", "PORT_FWD"},
		{map[string]string{"PORT_FWD": "53:53/udp,53:5353/udp"}, "PORT_FWD", "53:5353/udp", "PORT_FWD"},
		{map[string]string{"GRAPHICS": "vnc", "PORT_FWD": "5900:5900"}, "PORT_FWD", "5900:5900/tcp", "VNC_PORT"},
		{map[string]string{"GRAPHICS": "vnc", "SSH_PORT": "5901", "VNC_PORT": "5901"}, "VNC_PORT", "5901", "SSH_PORT"},
		{map[string]string{"NETWORK_MODE": "bridge", "NETWORK2_MODE": "nat", "PORT_FWD": "2222:22"}, "PORT_FWD", "2222:22/tcp", "SSH_PORT"},
		{map[string]string{"NETWORK_MODE": "bridge", "PORT_FWD": "8080:80"}, "PORT_FWD", "8080:80", "nat mode"},
	}
	for _, tc := range bad {
		t.Run("bad "+envName(tc.env), func(t *testing.T) {
			wantError(t, tc.env, tc.name, tc.value, tc.acc)
		})
	}
}

func TestLoadGuestName(t *testing.T) {
	tests := []struct {
		hostname, env, want string
	}{
		{"testhost", "", "testhost"},
		{"3f2a9c1b7d4e", "", "3f2a9c1b7d4e"}, // a docker container id
		{"web-1", "", "web-1"},
		{"", "", "ubuntu-2404"}, // then the distro, as the seed project
		{"my_host", "", "ubuntu-2404"},
		{"-bad", "", "ubuntu-2404"},
		{strings.Repeat("h", 64), "", "ubuntu-2404"},
		{"testhost", "db", "db"},
		{"", "A1", "A1"},
		{"testhost", strings.Repeat("n", 63), strings.Repeat("n", 63)},
	}
	for _, tc := range tests {
		t.Run(tc.hostname+"/"+tc.env, func(t *testing.T) {
			h := testHost
			h.Hostname = tc.hostname
			env := map[string]string{}
			if tc.env != "" {
				env["GUEST_NAME"] = tc.env
			}
			c, err := Load(env, h)
			if err != nil {
				t.Fatal(err)
			}
			if c.GuestName != tc.want {
				t.Errorf("GuestName = %q, want %q", c.GuestName, tc.want)
			}
		})
	}
}

func TestLoadDataDir(t *testing.T) {
	tests := []struct {
		name                string
		stateHome, home, dd string
		want                string
	}{
		{"XDG_STATE_HOME", "/xdg/state", "/home/u", "", "/xdg/state/vmrunner"},
		{"HOME", "", "/home/u", "", "/home/u/.local/state/vmrunner"},
		{"explicit", "/xdg/state", "/home/u", "/data", "/data"},
		{"cleaned", "", "/home/u", "/srv//vm/../vmrunner/", "/srv/vmrunner"},
		{"explicit without home", "", "", "/data", "/data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := testHost
			h.StateHome, h.HomeDir = tc.stateHome, tc.home
			env := map[string]string{}
			if tc.dd != "" {
				env["DATA_DIR"] = tc.dd
			}
			c, err := Load(env, h)
			if err != nil {
				t.Fatal(err)
			}
			if c.DataDir != tc.want {
				t.Errorf("DataDir = %q, want %q", c.DataDir, tc.want)
			}
		})
	}
	t.Run("no default", func(t *testing.T) {
		h := testHost
		h.StateHome, h.HomeDir = "", ""
		_, err := Load(map[string]string{}, h)
		var ce *Error
		if !errors.As(err, &ce) || ce.Var != "DATA_DIR" || !strings.Contains(ce.Accepted, "absolute") {
			t.Errorf("error %v, want a DATA_DIR *Error", err)
		}
	})
	t.Run("relative", func(t *testing.T) {
		wantError(t, map[string]string{"DATA_DIR": "state/vms"}, "DATA_DIR", "state/vms", "absolute")
	})
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	img := write("disk.img", "raw")
	kernel := write("vmlinuz", "kernel")
	initrd := write("initrd.img", "initrd")
	userData := write("user-data", "#cloud-config\npackages: [htop]\n")
	missing := filepath.Join(dir, "missing")

	t.Run("BOOT_FROM file", func(t *testing.T) {
		c := mustLoad(t, map[string]string{"BOOT_FROM": img})
		if c.Boot != (BootSource{Path: img}) {
			t.Errorf("Boot = %+v", c.Boot)
		}
	})
	t.Run("BOOT_FROM blank", func(t *testing.T) {
		c := mustLoad(t, map[string]string{"BOOT_FROM": "blank", "DISTRO": "debian-12"})
		if c.Boot != (BootSource{Blank: true}) {
			t.Errorf("Boot = %+v", c.Boot)
		}
	})
	t.Run("DISTRO", func(t *testing.T) {
		c := mustLoad(t, map[string]string{"DISTRO": "debian-12"})
		if c.Boot != (BootSource{Distro: "debian-12"}) {
			t.Errorf("Boot = %+v", c.Boot)
		}
	})
	t.Run("BOOT_FROM URL", func(t *testing.T) {
		sum := strings.Repeat("ab", 32)
		c := mustLoad(t, map[string]string{"BOOT_FROM": "https://example.com/x.img", "BOOT_FROM_SHA256": "sha256:" + strings.ToUpper(sum)})
		if c.Boot != (BootSource{URL: "https://example.com/x.img", SHA256: sum}) {
			t.Errorf("Boot = %+v", c.Boot)
		}
	})
	t.Run("BOOT_FROM http with a digest, format and caps", func(t *testing.T) {
		sum := strings.Repeat("ab", 32)
		c := mustLoad(t, map[string]string{"BOOT_FROM": "http://example.com/x.img", "BOOT_FROM_SHA256": sum,
			"BOOT_FROM_FORMAT": "QCOW2", "DOWNLOAD_MAX_SIZE": "1G"})
		if c.Boot != (BootSource{URL: "http://example.com/x.img", SHA256: sum, Format: "qcow2"}) || c.MediaMaxSize != 1<<30 || c.MediaMaxUnpacked != 512<<30 {
			t.Errorf("Boot = %+v, caps %d %d", c.Boot, c.MediaMaxSize, c.MediaMaxUnpacked)
		}
	})
	t.Run("BOOT_FROM missing", func(t *testing.T) {
		ce := wantError(t, map[string]string{"BOOT_FROM": missing}, "BOOT_FROM", missing, "existing local")
		if !errors.Is(ce, fs.ErrNotExist) {
			t.Errorf("cause %v is not ErrNotExist", ce.Err)
		}
	})
	t.Run("kernel boot", func(t *testing.T) {
		c := mustLoad(t, map[string]string{"KERNEL": kernel, "INITRD": initrd, "KERNEL_CMDLINE": "console=ttyS0 root=/dev/vda1"})
		if c.Kernel != kernel || c.Initrd != initrd || c.KernelCmdline != "console=ttyS0 root=/dev/vda1" {
			t.Errorf("kernel boot: %+v", c)
		}
		if c.Boot != (BootSource{}) {
			t.Errorf("kernel boot without BOOT_FROM has Boot %+v, want no disk", c.Boot)
		}
	})
	t.Run("kernel boot with an explicit DISTRO", func(t *testing.T) {
		c := mustLoad(t, map[string]string{"KERNEL": kernel, "DISTRO": "debian-12"})
		if c.Kernel != kernel || c.Boot != (BootSource{Distro: "debian-12"}) {
			t.Errorf("kernel boot with DISTRO: Boot %+v", c.Boot)
		}
		c = mustLoad(t, map[string]string{"KERNEL": kernel, "DISTRO": ""})
		if c.Boot != (BootSource{}) {
			t.Errorf("kernel boot with an empty DISTRO has Boot %+v, want no disk", c.Boot)
		}
	})
	t.Run("kernel boot with disk", func(t *testing.T) {
		c := mustLoad(t, map[string]string{"KERNEL": kernel, "BOOT_FROM": "blank"})
		if c.Kernel != kernel || !c.Boot.Blank {
			t.Errorf("kernel boot with disk: %+v", c)
		}
	})
	t.Run("KERNEL missing", func(t *testing.T) {
		wantError(t, map[string]string{"KERNEL": missing}, "KERNEL", missing, "readable kernel")
	})
	t.Run("KERNEL directory", func(t *testing.T) {
		wantError(t, map[string]string{"KERNEL": dir}, "KERNEL", dir, "readable kernel")
	})
	t.Run("INITRD missing", func(t *testing.T) {
		wantError(t, map[string]string{"KERNEL": kernel, "INITRD": missing}, "INITRD", missing, "readable initrd")
	})
	t.Run("user-data", func(t *testing.T) {
		c := mustLoad(t, map[string]string{"CLOUD_INIT_USER_DATA": userData})
		if c.UserDataPath != userData || string(c.UserData) != "#cloud-config\npackages: [htop]\n" {
			t.Errorf("user-data: %q %q", c.UserDataPath, c.UserData)
		}
	})
	t.Run("user-data missing", func(t *testing.T) {
		ce := wantError(t, map[string]string{"CLOUD_INIT_USER_DATA": missing}, "CLOUD_INIT_USER_DATA", missing, "readable cloud-init user-data")
		if !errors.Is(ce, fs.ErrNotExist) {
			t.Errorf("cause %v is not ErrNotExist", ce.Err)
		}
	})
	t.Run("user-data directory", func(t *testing.T) {
		wantError(t, map[string]string{"CLOUD_INIT_USER_DATA": dir}, "CLOUD_INIT_USER_DATA", dir, "readable cloud-init user-data")
	})
	t.Run("user-data unreadable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads mode 000 files")
		}
		p := write("secret", "#cloud-config\n")
		if err := os.Chmod(p, 0); err != nil {
			t.Fatal(err)
		}
		ce := wantError(t, map[string]string{"CLOUD_INIT_USER_DATA": p}, "CLOUD_INIT_USER_DATA", p, "readable")
		if !errors.Is(ce, fs.ErrPermission) {
			t.Errorf("cause %v is not ErrPermission", ce.Err)
		}
	})
}

func TestLoadDevices(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "dev.img")
	if err := os.WriteFile(img, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.img")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	c := mustLoad(t, map[string]string{"DEVICE": "dev.img", "DEVICE4": other})
	want := []Device{{Index: 1, Path: img}, {Index: 4, Path: other}}
	if !slices.Equal(c.Devices, want) {
		t.Errorf("Devices = %+v, want %+v", c.Devices, want)
	}
	ce := wantError(t, map[string]string{"DEVICE": img, "DEVICE2": "./dev.img"}, "DEVICE2", "./dev.img", "each named once")
	if !strings.Contains(ce.Error(), "already given as DEVICE") {
		t.Errorf("duplicate device error %q does not name DEVICE", ce)
	}
	if _, err := os.Stat("/dev/loop-control"); err == nil {
		wantError(t, map[string]string{"DEVICE": "/dev/loop-control"}, "DEVICE", "/dev/loop-control", "block device")
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro.img")
		if err := os.WriteFile(ro, nil, 0o444); err != nil {
			t.Fatal(err)
		}
		ce := wantError(t, map[string]string{"DEVICE5": ro}, "DEVICE5", ro, "read-write")
		if !errors.Is(ce, fs.ErrPermission) {
			t.Errorf("read-only device: cause %v, want a permission error", ce.Err)
		}
	}
}

func TestEnvMap(t *testing.T) {
	got := EnvMap([]string{"A=1", "B=", "C=x=y", "NOEQUALS", "=hidden"})
	want := map[string]string{"A": "1", "B": "", "C": "x=y", "": "hidden"}
	if !maps.Equal(got, want) {
		t.Errorf("EnvMap = %v, want %v", got, want)
	}
}

// typicalEnv is a realistic container configuration.
var typicalEnv = map[string]string{
	"PATH":           "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOSTNAME":       "3f2a9c1b7d4e",
	"HOME":           "/root",
	"DATA_DIR":       "/data",
	"GUEST_NAME":     "web",
	"BOOT_FROM":      "blank",
	"MEMORY":         "2G",
	"CPUS":           "half",
	"DISK_SIZE":      "40G",
	"PORT_FWD":       "8080:80,8443:443,5353:53/udp",
	"NETWORK2_MODE":  "nat",
	"NETWORK2_MODEL": "e1000",
	"NETWORK_MTU":    "1400",
	"SSH_PUBKEY":     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHt0ZXN0 me@host",
	"GUEST_PASSWORD": "s3cret",
	"EXTRA_ARGS":     "-device virtio-balloon-pci -no-reboot",
}

func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(typicalEnv, testHost); err != nil {
			b.Fatal(err)
		}
	}
}

// Edge cases found in review, each once a bug.
func TestLoadEdges(t *testing.T) {
	for _, v := range []string{"NaNG", "nanM", "0.1K", "1e-300T"} {
		wantError(t, map[string]string{"DISK_SIZE": v}, "DISK_SIZE", v, "with a unit")
	}
	host := testHost
	host.StateHome, host.HomeDir = "relative/state", "/home/tester"
	c, err := Load(map[string]string{}, host)
	if err != nil || c.DataDir != "/home/tester/.local/state/vmrunner" {
		t.Errorf("relative XDG_STATE_HOME: DataDir %q, %v; want the HOME default", c.DataDir, err)
	}
	host = testHost
	host.CPUs = 384
	if c, err := Load(map[string]string{"CPUS": "max"}, host); err != nil || c.CPUs != 255 {
		t.Errorf("CPUS=max on 384 CPUs: %v, %v; want 255", c, err)
	}
	host = testHost
	host.Hostname = "web1.example.com"
	if c, err := Load(map[string]string{}, host); err != nil || c.GuestName != "web1" {
		t.Errorf("hostname web1.example.com: GUEST_NAME %v, %v; want web1", c, err)
	}
}

func TestSplitArgsBytes(t *testing.T) {
	for in, want := range map[string][]string{
		"a\xffb":       {"a\xffb"},
		"file=caf\xe9": {"file=caf\xe9"},
		"a\\\nb c":     {"ab", "c"},
	} {
		got, err := SplitArgs(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
