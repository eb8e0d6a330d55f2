package config

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
)

// section is one table of variables: --help and docs/reference.md list
// the same sections, read from the struct tags that Load parses with.
type section struct {
	title  string         // "" for the main table
	raws   []reflect.Type // one aligned table from these structs' fields
	prefix string
}

var sections = []section{
	{"", []reflect.Type{reflect.TypeOf(rawMachine{}), reflect.TypeOf(rawHardware{}), reflect.TypeOf(rawIPXE{}), reflect.TypeOf(rawIPMI{})}, ""},
	{"NIC 1 reads NETWORK_*, NIC n (2-8) reads NETWORKn_* with the same suffixes:", []reflect.Type{nicFamily.raw}, nicPrefix(1)},
	{fmt.Sprintf("More disks, n from 2 to %d:", MaxDisks), []reflect.Type{diskFamily.raw}, ""},
	{fmt.Sprintf("Shared folders: share 1 reads FILESYSTEM_*, share n (2-%d) FILESYSTEMn_* with the same suffixes:", MaxShares), []reflect.Type{shareFamily.raw}, sharePrefix(1)},
}

// WriteHelp lists every variable with its default and meaning.
func WriteHelp(w io.Writer) error {
	for i, sec := range sections {
		if sec.title != "" {
			fmt.Fprintf(w, "\n%s\n", sec.title)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		if i == 0 {
			fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
		}
		for _, f := range sec.fields() {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", f.name, f.def, f.help)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// WriteReference writes the same tables in Markdown, for docs/reference.md.
func WriteReference(w io.Writer) error {
	cell := func(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
	for _, sec := range sections {
		if sec.title != "" {
			fmt.Fprintf(w, "\n%s\n\n", sec.title)
		}
		fmt.Fprintln(w, "| variable | default | meaning |")
		fmt.Fprintln(w, "| --- | --- | --- |")
		for _, f := range sec.fields() {
			if _, err := fmt.Fprintf(w, "| `%s` | %s | %s |\n", f.name, cell(f.def), cell(f.help)); err != nil {
				return err
			}
		}
	}
	return nil
}

// fields lists the section's variables in struct order.
func (sec section) fields() []field {
	var out []field
	for _, t := range sec.raws {
		out = append(out, fields(t, sec.prefix)...)
	}
	return out
}

type field struct {
	name, def, help string
}

func fields(t reflect.Type, prefix string) []field {
	out := make([]field, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		def := sf.Tag.Get("envDefault")
		if def == "" {
			def = "(unset)"
		}
		out = append(out, field{
			name: prefix + sf.Tag.Get("env"),
			def:  def,
			help: sf.Tag.Get("help"),
		})
	}
	return out
}

// WriteShow prints the effective values of the variables, secrets masked.
func WriteShow(w io.Writer, c *Config) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, kv := range c.Effective() {
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}

// Effective returns the configuration as variable/value pairs, secrets
// masked (inside values too: URLs, EXTRA_ARGS), in --help order.
func (c *Config) Effective() [][2]string {
	boot := c.Boot.Path
	switch {
	case c.Boot.Blank:
		boot = "blank"
	case c.Boot.URL != "":
		boot = c.Boot.URL
	}
	var fwd []string
	for _, f := range c.PortFwds {
		fwd = append(fwd, fmt.Sprintf("%d:%d/%s", f.HostPort, f.GuestPort, f.Proto))
	}
	persist := "auto"
	if c.Persist != nil {
		persist = fmt.Sprint(*c.Persist)
	}
	arch, machine := string(c.Arch), c.Machine
	if arch == "" {
		arch = "(the DISTRO entry's, else the host's)"
	}
	if machine == "" {
		machine = "(q35; virt for aarch64)"
	}
	out := [][2]string{
		{"BOOT_FROM", boot}, {"BOOT_FROM_FORMAT", c.Boot.Format}, {"DISTRO", c.Boot.Distro}, {"CATALOG", c.Catalog},
		{"CATALOG_URL", c.JSONCatalog.URL}, {"CATALOG_CACHE", c.JSONCatalog.Cache}, {"CATALOG_OFFLINE", fmt.Sprint(c.JSONCatalog.Offline)},
		{"KERNEL", c.Kernel}, {"INITRD", c.Initrd}, {"KERNEL_CMDLINE", c.KernelCmdline},
		{"BOOT_MODE", string(c.BootMode)},
		{"MEMORY", fmt.Sprint(c.MemoryMiB)}, {"CPUS", fmt.Sprint(c.CPUs)},
		{"CPU_MODEL", c.CPUModel}, {"ARCH", arch}, {"MACHINE", machine}, {"ACCEL", string(c.Accel)},
		{"REQUIRE_KVM", fmt.Sprint(c.RequireKVM)}, {"DISK_SIZE", fmt.Sprintf("%dM", c.DiskSize>>20)},
		{"DISK_TYPE", string(c.DiskBus)}, {"DISK_CACHE", c.DiskCache}, {"DISK_IO", c.DiskIO},
		{"DEVICE", c.device(1)}, {"PERSIST", persist},
		{"GUEST_NAME", c.GuestName}, {"DATA_DIR", c.DataDir},
		{"SHUTDOWN_TIMEOUT", fmt.Sprint(int(c.ShutdownTimeout.Seconds()))},
		{"KEEP_ALIVE_AFTER_VM_STOP", fmt.Sprint(c.KeepAlive)}, {"POWER_ON_AT_START", fmt.Sprint(c.PowerOnAtStart)},
		{"EXTRA_ARGS", strings.Join(c.ExtraArgs, " ")},
		{"LOG_FORMAT", c.LogFormat}, {"LOG_VERBOSE", fmt.Sprint(c.Verbose)},
		{"SERIAL_LOG_MAX", fmt.Sprintf("%dK", c.SerialLogMax>>10)},
		{"SANDBOX", fmt.Sprint(c.Sandbox)}, {"QEMU_USER", c.QEMUUser},
		{"SSH_PORT", fmt.Sprint(c.SSHPort)}, {"PORT_FWD", strings.Join(fwd, ",")},
		{"PORT_FWD_ADDR", c.PortFwdAddr},
		{"CLOUD_INIT", fmt.Sprint(c.CloudInit)}, {"GUEST_USER", c.GuestUser},
		{"GUEST_PASSWORD", c.GuestPassword}, {"SSH_PUBKEY", c.SSHPubKey},
		{"CLOUD_INIT_USER_DATA", c.UserDataPath},
		{"CLOUD_INIT_NETWORK_CONFIG", c.NetworkConfigPath},
		{"GRAPHICS", string(c.Console.Graphics)}, {"VNC_PORT", fmt.Sprint(c.VNCPort)},
		{"REDFISH_ENABLE", fmt.Sprint(c.Redfish.Enabled)},
	}
	if r := c.Redfish; r.Enabled {
		out = append(out, [][2]string{
			{"REDFISH_PORT", fmt.Sprint(r.Port)}, {"REDFISH_LISTEN", r.Listen},
			{"REDFISH_USERNAME", r.Username}, {"REDFISH_PASSWORD", r.Password},
			{"REDFISH_SYSTEM_ID", r.SystemID},
			{"REDFISH_TLS_CERT", r.TLSCert}, {"REDFISH_TLS_KEY", r.TLSKey},
		}...)
	}
	out = append(out, c.downloadEffective()...)
	out = append(out, c.Hardware.effective()...)
	out = append(out, c.IPXE.effective()...)
	out = append(out, c.Console.effective()...)
	out = append(out, c.IPMI.effective()...)
	for _, d := range c.ExtraDisks {
		out = append(out, [2]string{fmt.Sprintf("DISK%d_SIZE", d.Index), fmt.Sprintf("%dM", d.Size>>20)})
	}
	for _, d := range c.Devices {
		if d.Index > 1 {
			out = append(out, [2]string{d.Var(), d.Path})
		}
	}
	for _, n := range c.NICs {
		p := n.Prefix()
		mac, mtu := "(derived)", "(detected)"
		if n.MAC != nil {
			mac = n.MAC.String()
		}
		if n.MTU != 0 {
			mtu = fmt.Sprint(n.MTU)
		}
		out = append(out, [2]string{p + "MODE", string(n.Mode)}, [2]string{p + "MODEL", n.Model},
			[2]string{p + "MAC", mac}, [2]string{p + "MTU", mtu})
		switch n.Mode {
		case NetBridge:
			out = append(out, [2]string{p + "BRIDGE", n.Bridge})
		case NetDirect:
			out = append(out, [2]string{p + "DIRECT_DEV", n.DirectDev})
		}
		out = append(out, n.nicEffective()...)
	}
	for i := range out {
		out[i][1] = c.mask(RedactValue(out[i][0], out[i][1]))
	}
	return out
}

// mask replaces the configuration's literal secrets in s.
func (c *Config) mask(s string) string {
	for _, secret := range c.Secrets() {
		s = strings.ReplaceAll(s, secret, Masked)
	}
	return s
}

// device is DEVICE (index 1) or DEVICEn's path, "" when unset.
func (c *Config) device(index int) string {
	for _, d := range c.Devices {
		if d.Index == index {
			return d.Path
		}
	}
	return ""
}
