package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// envTags lists the env tags of t's fields, with prefix, failing on a
// field without an env or help tag.
func envTags(t *testing.T, typ reflect.Type, prefix string) []reflect.StructField {
	t.Helper()
	var out []reflect.StructField
	for i := range typ.NumField() {
		sf := typ.Field(i)
		if sf.Tag.Get("env") == "" {
			t.Errorf("%s.%s has no env tag", typ.Name(), sf.Name)
		}
		if sf.Tag.Get("help") == "" {
			t.Errorf("%s.%s has no help tag", typ.Name(), sf.Name)
		}
		out = append(out, sf)
	}
	return out
}

// helpLines maps each variable of WriteHelp's output to its line.
func helpLines(t *testing.T) map[string]string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteHelp(&buf); err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(buf.String(), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	return lines
}

// TestWriteHelpListsEveryField reflects over the raw structs, so a new
// variable cannot be left out of --help.
func TestWriteHelpListsEveryField(t *testing.T) {
	lines := helpLines(t)
	check := func(sf reflect.StructField, name string) {
		line, ok := lines[name]
		if !ok {
			t.Errorf("--help does not list %s", name)
			return
		}
		def := sf.Tag.Get("envDefault")
		if def == "" {
			def = "(unset)"
		}
		if f := strings.Fields(line); len(f) < 2 || f[1] != def {
			t.Errorf("--help line %q: want default %q", line, def)
		}
		if help := sf.Tag.Get("help"); !strings.Contains(line, help) {
			t.Errorf("--help line %q lacks the meaning %q", line, help)
		}
	}
	for _, sf := range envTags(t, reflect.TypeOf(rawMachine{}), "") {
		check(sf, sf.Tag.Get("env"))
	}
	for _, sf := range envTags(t, reflect.TypeOf(rawHardware{}), "") {
		check(sf, sf.Tag.Get("env"))
	}
	for _, sf := range envTags(t, reflect.TypeOf(rawNIC{}), "NETWORK_") {
		check(sf, "NETWORK_"+sf.Tag.Get("env"))
	}
	for _, sf := range envTags(t, reflect.TypeOf(rawDisk{}), "") {
		check(sf, sf.Tag.Get("env"))
	}
	if _, ok := lines["VARIABLE"]; !ok {
		t.Errorf("--help has no header line")
	}
}

// contractVars are the variables the user contract names, with their
// defaults as --help must show them.
var contractVars = map[string]string{
	"BOOT_FROM": "(unset)", "DISTRO": "ubuntu-2404", "KERNEL": "(unset)", "INITRD": "(unset)",
	"KERNEL_CMDLINE": "(unset)", "BOOT_MODE": "uefi",
	"MEMORY": "4096", "CPUS": "2", "CPU_MODEL": "host", "MACHINE": "q35", "ACCEL": "auto",
	"REQUIRE_KVM": "0", "DISK_SIZE": "20G", "GUEST_NAME": "(unset)", "DATA_DIR": "(unset)",
	"SHUTDOWN_TIMEOUT": "30", "EXTRA_ARGS": "(unset)", "LOG_FORMAT": "(unset)", "LOG_VERBOSE": "0",
	"NETWORK_MODE": "nat", "NETWORK_BRIDGE": "br0", "NETWORK_DIRECT_DEV": "eth0", "NETWORK_MODEL": "virtio",
	"NETWORK_MAC": "(unset)", "NETWORK_MTU": "(unset)", "SSH_PORT": "2222", "PORT_FWD": "(unset)",
	"CLOUD_INIT": "1", "GUEST_USER": "user", "GUEST_PASSWORD": "(unset)", "SSH_PUBKEY": "(unset)",
	"CLOUD_INIT_USER_DATA": "(unset)",
	"GRAPHICS":             "none", "VNC_PORT": "5900", "REDFISH_ENABLE": "0",
	"REDFISH_PORT": "8443", "REDFISH_USERNAME": "admin", "REDFISH_PASSWORD": "(unset)",
}

func TestWriteHelpMatchesContract(t *testing.T) {
	lines := helpLines(t)
	for name, def := range contractVars {
		line, ok := lines[name]
		if !ok {
			t.Errorf("--help does not list the contract's %s", name)
			continue
		}
		if f := strings.Fields(line); len(f) < 2 || f[1] != def {
			t.Errorf("--help line %q: the contract's default is %q", line, def)
		}
	}
}

func TestWriteShowMasksSecrets(t *testing.T) {
	env := map[string]string{
		"GUEST_PASSWORD":   "hunter2-Secret",
		"REDFISH_PASSWORD": "redfish-Secret",
		"NETWORK2_MODE":    "bridge",
		"NETWORK2_MAC":     "52:54:00:00:00:02",
		"NETWORK3_MODE":    "direct",
		"NETWORK3_MTU":     "9000",
		"PORT_FWD":         "8080:80,53:53/udp",
		"DISK_TYPE":        "nvme",
		"DISK3_SIZE":       "2G",
	}
	dev := filepath.Join(t.TempDir(), "dev.img")
	if err := os.WriteFile(dev, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env["DEVICE2"] = dev
	c := mustLoad(t, env)
	var buf bytes.Buffer
	if err := WriteShow(&buf, c); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, secret := range []string{"hunter2", "redfish-Secret"} {
		if strings.Contains(out, secret) {
			t.Errorf("--show-config shows a secret %q:\n%s", secret, out)
		}
	}
	want := map[string]string{
		"GUEST_PASSWORD":      "********",
		"MEMORY":              "4096",
		"DISK_SIZE":           "20480M",
		"PORT_FWD":            "8080:80/tcp,53:53/udp",
		"GRAPHICS":            "none",
		"NETWORK_MODE":        "nat",
		"NETWORK_MAC":         "(derived)",
		"NETWORK_MTU":         "(detected)",
		"NETWORK2_MODE":       "bridge",
		"NETWORK2_BRIDGE":     "br0",
		"NETWORK2_MAC":        "52:54:00:00:00:02",
		"NETWORK3_DIRECT_DEV": "eth0",
		"NETWORK3_MTU":        "9000",
		"DISK_TYPE":           "nvme",
		"DISK_CACHE":          "none",
		"DISK_IO":             "native",
		"PERSIST":             "auto",
		"DISK3_SIZE":          "2048M",
		"DEVICE2":             dev,
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			got[f[0]] = f[1]
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("--show-config %s = %q, want %q", k, got[k], v)
		}
	}
	if strings.Contains(out, "NETWORK_BRIDGE") {
		t.Errorf("--show-config shows a bridge for a nat NIC:\n%s", out)
	}

	// Every variable --show-config prints is one --help documents.
	lines := helpLines(t)
	for _, kv := range c.Effective() {
		name := kv[0]
		if n := numberedHelpName(name); n != "" {
			name = n
		}
		if _, ok := lines[name]; !ok {
			t.Errorf("--show-config prints %s, which --help does not list", kv[0])
		}
	}
}

// numberedHelpName maps a numbered variable to the name --help lists:
// NETWORK3_MTU to NETWORK_MTU, DISK3_SIZE to DISKn_SIZE.
func numberedHelpName(s string) string {
	for _, f := range []family{nicFamily, shareFamily} {
		if first := f.firstName(s); first != "" {
			return first
		}
	}
	if t, _, ok := diskFamily.match(s); ok {
		return t
	}
	return ""
}

func TestEffectiveEmptyPasswordStaysEmpty(t *testing.T) {
	c := mustLoad(t, map[string]string{})
	c.GuestPassword = ""
	for _, kv := range c.Effective() {
		if kv[0] == "GUEST_PASSWORD" && kv[1] != "" {
			t.Errorf("empty password shown as %q", kv[1])
		}
	}
}
