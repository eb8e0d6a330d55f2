package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// SHELL is the seed project's name, honoured only in a container: a login
// shell's SHELL (a laptop user's /usr/bin/zsh) must not become the guest
// user's shell, which the image may lack.
func TestShellOnlyAsPID1(t *testing.T) {
	env := map[string]string{"SHELL": "/usr/bin/zsh"}
	c, err := Load(env, testHost)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hardware.Shell != "" {
		t.Errorf("SHELL from a login shell became the guest's: %q", c.Hardware.Shell)
	}
	container := testHost
	container.PID1 = true
	if c, err = Load(env, container); err != nil {
		t.Fatal(err)
	}
	if c.Hardware.Shell != "/usr/bin/zsh" {
		t.Errorf("SHELL as PID 1 = %q, want /usr/bin/zsh", c.Hardware.Shell)
	}
	env["GUEST_SHELL"] = "/bin/sh"
	if c, err = Load(env, container); err != nil {
		t.Fatal(err)
	}
	if c.Hardware.Shell != "/bin/sh" {
		t.Errorf("GUEST_SHELL beside SHELL = %q, want /bin/sh", c.Hardware.Shell)
	}
	if _, err := Load(map[string]string{"SHELL": "zsh"}, container); !isConfigError(err, "SHELL") {
		t.Errorf("a relative SHELL as PID 1: %v, want a SHELL error", err)
	}
}

func TestLoadHardware(t *testing.T) {
	c, err := Load(map[string]string{"NO_CONSOLE": "1", "GUEST_SHELL": "/bin/sh", "BOOT_ORDER": "CDROM, hd,network", "FORCE_ISO": "yes",
		"DOWNLOAD_RETRIES": "2", "ALLOCATE": "1", "USB": "1", "BALLOON": "true", "RNG": "0", "IO_THREAD": "1", "HYPERV": "1"}, testHost)
	if err != nil {
		t.Fatal(err)
	}
	want := Hardware{NoConsole: true, Shell: "/bin/sh", BootOrder: []string{"cdrom", "hd", "network"}, ForceISO: true,
		DownloadRetries: 2, Allocate: true, USB: true, Balloon: true, IOThread: true, HyperV: true}
	h := c.Hardware
	if !slices.Equal(h.BootOrder, want.BootOrder) {
		t.Errorf("BootOrder = %q", h.BootOrder)
	}
	h.BootOrder = want.BootOrder
	if !equalHardware(h, want) {
		t.Errorf("Hardware = %+v, want %+v", h, want)
	}
}

func equalHardware(a, b Hardware) bool {
	a.BootOrder, b.BootOrder = nil, nil
	return a.NoConsole == b.NoConsole && a.Shell == b.Shell && a.ForceISO == b.ForceISO && a.DownloadRetries == b.DownloadRetries &&
		a.Allocate == b.Allocate && a.USB == b.USB && a.Balloon == b.Balloon && a.RNG == b.RNG && a.IOThread == b.IOThread && a.HyperV == b.HyperV
}

func TestBlankDisk(t *testing.T) {
	c, err := Load(map[string]string{"BLANK_DISK": "1"}, testHost)
	if err != nil {
		t.Fatal(err)
	}
	if c.Boot != (BootSource{Blank: true}) {
		t.Errorf("BLANK_DISK=1: boot %+v, want blank", c.Boot)
	}
}

func TestDiskSizeShare(t *testing.T) {
	h := testHost
	h.FreeBytes = func(string) (int64, error) { return 100 << 30, nil }
	for v, want := range map[string]int64{"max": 90 << 30, "half": 50 << 30, "HALF": 50 << 30} {
		c, err := Load(map[string]string{"DISK_SIZE": v}, h)
		if err != nil {
			t.Fatal(err)
		}
		if c.DiskSize != want {
			t.Errorf("DISK_SIZE=%s gave %d, want %d", v, c.DiskSize, want)
		}
	}
	h.FreeBytes = func(string) (int64, error) { return 0, errors.New("statfs failed") }
	if _, err := Load(map[string]string{"DISK_SIZE": "max"}, h); !isConfigError(err, "DISK_SIZE") {
		t.Errorf("DISK_SIZE=max without free space known: %v", err)
	}
}

func TestRefusedWithAdvice(t *testing.T) {
	tests := []struct {
		env    map[string]string
		name   string
		advice string
	}{
		{map[string]string{"TPM": "maybe"}, "TPM", "auto (on with BOOT_MODE=secure), 1 or 0"},
		{map[string]string{"GPU": "nvidia"}, "GPU", "off, or intel"},
		{map[string]string{"GPU_RENDER_NODE": "/dev/null"}, "GPU_RENDER_NODE", "only with GPU=intel"},
		{map[string]string{"GPU": "intel", "GPU_RENDER_NODE": "/etc/hostname"}, "GPU_RENDER_NODE", "not a character device"},
		{map[string]string{"GPU": "intel", "GPU_RENDER_NODE": "dri/renderD128"}, "GPU_RENDER_NODE", "not an absolute path"},
		{map[string]string{"GPU": "intel", "GPU_RENDER_NODE": "/dev/dri/renderD200"}, "GPU_RENDER_NODE", "no such file"},
		{map[string]string{"NETWORK_BOOT": "1", "BOOT_ORDER": "hd"}, "NETWORK_BOOT", "hd,network"},
		{map[string]string{"NETWORK_CONTAINER_INTERFACE": "net1"}, "NETWORK_CONTAINER_INTERFACE", "NETWORK_MODE=container"},
		{map[string]string{"NETWORK_MODE": "container"}, "NETWORK_CONTAINER_INTERFACE", "required with NETWORK_MODE=container"},
		{map[string]string{"NETWORK3_MODE": "Container"}, "NETWORK3_CONTAINER_INTERFACE", "required with NETWORK3_MODE=container"},
		{map[string]string{"BOOT_FROM": "quay.io/containerdisks/fedora:40"}, "BOOT_FROM", "docker cp"},
		{map[string]string{"BOOT_ORDER": "floppy"}, "BOOT_ORDER", "hd, cdrom and network"},
		{map[string]string{"BOOT_ORDER": "hd,hd"}, "BOOT_ORDER", "each at most once"},
		{map[string]string{"GUEST_SHELL": "bash"}, "GUEST_SHELL", "absolute path"},
		{map[string]string{"DOWNLOAD_RETRIES": "-1"}, "DOWNLOAD_RETRIES", "0 to 100"},
		{map[string]string{"BLANK_DISK": "1", "BOOT_FROM": "https://example.com/x.qcow2"}, "BLANK_DISK", "BOOT_FROM=blank"},
	}
	for _, tc := range tests {
		_, err := Load(tc.env, testHost)
		if !isConfigError(err, tc.name) || !strings.Contains(err.Error(), tc.advice) {
			t.Errorf("Load(%v) = %v, want a %s error saying %q", tc.env, err, tc.name, tc.advice)
		}
	}
	for _, off := range []map[string]string{{"TPM": "0"}, {"TPM": "auto"}, {"TPM": "1"}, {"GPU": "off"}, {"GPU": "intel"},
		{"GPU": "intel", "GPU_RENDER_NODE": "/dev/null"}, {"DISK_TYPE": "usb"}, {"ARCH": "amd64"}, {"ARCH": "x86_64"}, {"NETWORK_BOOT": "0"}, {"CATALOG_OFFLINE": "0"}} {
		if _, err := Load(off, testHost); err != nil {
			t.Errorf("Load(%v) = %v, want it accepted", off, err)
		}
	}
}

func isConfigError(err error, name string) bool {
	for _, e := range flatten(err) {
		var ce *Error
		if errors.As(e, &ce) && ce.Var == name {
			return true
		}
	}
	return false
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func FuzzParseBootOrder(f *testing.F) {
	for _, s := range []string{"", "hd", "cdrom,hd", "network, hd ,cdrom", "HD,CD", "hd,hd", "floppy", ",", "pxe,disk,iso"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		order, err := ParseBootOrder(v)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Var != "BOOT_ORDER" {
				t.Fatalf("ParseBootOrder(%q): %v is not a BOOT_ORDER error", v, err)
			}
			return
		}
		seen := map[string]bool{}
		for _, d := range order {
			if seen[d] || (d != BootHD && d != BootCDROM && d != BootNetwork) {
				t.Fatalf("ParseBootOrder(%q) = %q", v, order)
			}
			seen[d] = true
		}
	})
}

func TestTPMAndGPU(t *testing.T) {
	tests := []struct {
		env  map[string]string
		tpm  TPMSetting
		gpu  string
		node string
	}{
		{nil, TPMAuto, "", ""},
		{map[string]string{"TPM": "1"}, TPMOn, "", ""},
		{map[string]string{"TPM": "yes"}, TPMOn, "", ""},
		{map[string]string{"TPM": "0"}, TPMOff, "", ""},
		{map[string]string{"TPM": " AUTO "}, TPMAuto, "", ""},
		{map[string]string{"GPU": "intel"}, TPMAuto, GPUIntel, ""},
		{map[string]string{"GPU": "none"}, TPMAuto, "", ""},
		{map[string]string{"GPU": "Intel", "GPU_RENDER_NODE": "/dev/null"}, TPMAuto, GPUIntel, "/dev/null"},
	}
	for _, tc := range tests {
		c, err := Load(tc.env, testHost)
		if err != nil {
			t.Errorf("Load(%v): %v", tc.env, err)
			continue
		}
		if h := c.Hardware; h.TPM != tc.tpm || h.GPU != tc.gpu || h.RenderNode != tc.node {
			t.Errorf("Load(%v): TPM %q GPU %q GPU_RENDER_NODE %q, want %q %q %q", tc.env, h.TPM, h.GPU, h.RenderNode, tc.tpm, tc.gpu, tc.node)
		}
	}
}
