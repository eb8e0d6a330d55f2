package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// bootFormats are BOOT_FROM_FORMAT's values: qemu-img's names, and iso.
var bootFormats = []string{"raw", "qcow2", "vmdk", "vhdx", "vpc", "vdi", "iso"}

// MaxNICs is the highest NIC index (NETWORK8_*).
const MaxNICs = 8

// Host holds the facts about the machine that defaults depend on, so that
// Load stays a function of its inputs.
type Host struct {
	Hostname  string
	HomeDir   string
	StateHome string // $XDG_STATE_HOME, may be empty
	// FreeBytes is the space free for an unprivileged user on the
	// filesystem that holds path (or its nearest existing parent), for
	// DISK_SIZE=max and half; nil or an error: unknown.
	FreeBytes func(path string) (int64, error)
	MemoryMiB int // what this process may use (cgroup limit or RAM)
	CPUs      int // CPUs this process may use
	// PID1: vmrunner is a container's entrypoint, where SHELL can only
	// come from the user (-e SHELL=…), not from a login shell.
	PID1 bool
	Arch Arch // the machine's (HostArch); "": x86_64
}

func nicPrefix(i int) string { return nicFamily.name(nicFamily.prefix, i) }

// Load reads and validates the configuration from environ (os.Environ form
// is converted by the caller with EnvMap).
func Load(environ map[string]string, host Host) (*Config, error) {
	var raw rawMachine
	if err := env.ParseWithOptions(&raw, env.Options{Environment: environ}); err != nil {
		return nil, fmt.Errorf("reading environment: %w", err)
	}
	c := &Config{}
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	check(loadMachine(c, raw, host))
	check(loadBoot(c, raw, environ["DISTRO"] != ""))
	check(loadArch(c, raw.Arch, environ["DISTRO"] != "", host, environ))
	check(loadHardware(c, environ, host.PID1))
	check(loadDisks(c, raw, environ))
	check(loadNICs(c, environ))
	check(loadPorts(c, raw))
	check(loadCloudInit(c, raw))
	check(loadConsole(c, raw))
	check(loadRedfish(c, raw))
	check(loadIPMI(c, environ))
	check(loadShares(c, environ))
	check(loadNetBoot(c, environ))
	if len(errs) == 0 {
		check(checkPortCollisions(c))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// EnvMap converts os.Environ() output into a map.
func EnvMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// loadBoot reads the boot source. DISTRO counts when BOOT_FROM is unset;
// with KERNEL only when set explicitly (a kernel boots without a disk
// otherwise, rather than on the default distribution's).
func loadBoot(c *Config, raw rawMachine, distroSet bool) error {
	var errs []error
	var err error
	c.Kernel, c.Initrd, c.KernelCmdline = raw.Kernel, raw.Initrd, raw.KernelCmdline
	c.Catalog = raw.Catalog
	if c.JSONCatalog, err = loadJSONCatalog(raw, c.CacheDir()); err != nil {
		errs = append(errs, err)
		c.JSONCatalog = JSONCatalog{} // DISTRO is looked up without it
	}
	switch {
	case raw.BootFrom == "blank":
		c.Boot.Blank = true
	case refusedBootFrom(raw.BootFrom) != "":
		errs = append(errs, &Error{Var: "BOOT_FROM", Value: raw.BootFrom, Accepted: refusedBootFrom(raw.BootFrom)})
	case strings.HasPrefix(raw.BootFrom, "http://") || strings.HasPrefix(raw.BootFrom, "https://"):
		c.Boot.URL = raw.BootFrom
		if raw.BootFromSHA != "" {
			if c.Boot.SHA256, err = parseSHA256(raw.BootFromSHA); err != nil {
				errs = append(errs, err)
			}
		}
		if !strings.HasPrefix(c.Boot.URL, "https://") && c.Boot.SHA256 == "" {
			errs = append(errs, &Error{Var: "BOOT_FROM", Value: c.Boot.URL, Accepted: "an https URL, or an http URL together with BOOT_FROM_SHA256 (plain http can be altered on the way)"})
		}
	case raw.BootFrom != "":
		errs = append(errs, checkFile("BOOT_FROM", raw.BootFrom, "an existing local image file, an http(s) URL, or 'blank'"))
		c.Boot.Path = raw.BootFrom
	case raw.Kernel == "" || distroSet:
		// Looked up in the catalog by the plan (vm), which CATALOG may extend.
		c.Boot.Distro = raw.Distro
	}
	if raw.BootFromFmt != "" {
		c.Boot.Format, err = oneOf("BOOT_FROM_FORMAT", raw.BootFromFmt, bootFormats...)
		errs = append(errs, err)
		if c.Boot.Path == "" && c.Boot.URL == "" {
			errs = append(errs, &Error{Var: "BOOT_FROM_FORMAT", Value: raw.BootFromFmt, Accepted: "only together with BOOT_FROM set to an image file or URL"})
		}
	}
	c.MediaMaxSize, err = parseSize("DOWNLOAD_MAX_SIZE", raw.DownloadMax)
	errs = append(errs, err)
	c.MediaMaxUnpacked, err = parseSize("EXTRACT_MAX_SIZE", raw.ExtractMax)
	errs = append(errs, err)
	if raw.BootFromSHA != "" && c.Boot.URL == "" {
		errs = append(errs, &Error{Var: "BOOT_FROM_SHA256", Value: raw.BootFromSHA, Accepted: "only together with an http(s) BOOT_FROM"})
	}
	if raw.Kernel != "" {
		errs = append(errs, checkFile("KERNEL", raw.Kernel, "a readable kernel image"))
	}
	if raw.Initrd != "" {
		if raw.Kernel == "" {
			errs = append(errs, &Error{Var: "INITRD", Value: raw.Initrd, Accepted: "only together with KERNEL"})
		}
		errs = append(errs, checkFile("INITRD", raw.Initrd, "a readable initrd image"))
	}
	if raw.KernelCmdline != "" && raw.Kernel == "" {
		errs = append(errs, &Error{Var: "KERNEL_CMDLINE", Value: raw.KernelCmdline, Accepted: "only together with KERNEL"})
	}
	if c.BootMode, err = oneOf("BOOT_MODE", raw.BootMode, BootUEFI, BootLegacy, BootSecure); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// parseSHA256 reads a pinned sha256: 64 hex digits, optionally prefixed
// "sha256:" as other tools print it.
func parseSHA256(v string) (string, error) {
	h := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(v), "sha256:"))
	if _, err := hex.DecodeString(h); err != nil || len(h) != 64 {
		return "", &Error{Var: "BOOT_FROM_SHA256", Value: v, Accepted: "64 hex digits (optionally prefixed sha256:)"}
	}
	return h, nil
}

// LoadCatalogs reads only what --list-distros needs: CATALOG, and the
// JSON catalog's variables (whose kept copy defaults to DATA_DIR/cache).
func LoadCatalogs(environ map[string]string, host Host) (string, JSONCatalog, error) {
	var raw rawMachine
	if err := env.ParseWithOptions(&raw, env.Options{Environment: environ}); err != nil {
		return "", JSONCatalog{}, fmt.Errorf("reading environment: %w", err)
	}
	c, err := LoadState(environ, host)
	if err != nil {
		return "", JSONCatalog{}, err
	}
	j, err := loadJSONCatalog(raw, c.CacheDir())
	return raw.Catalog, j, err
}

// loadJSONCatalog reads CATALOG_URL, CATALOG_CACHE and CATALOG_OFFLINE.
// A plain-http catalog is refused: it lists the checksums the images are
// verified against, so whoever can alter it can swap both.
func loadJSONCatalog(raw rawMachine, cacheDir string) (JSONCatalog, error) {
	var errs []error
	j := JSONCatalog{URL: strings.TrimSpace(raw.CatalogURL), Cache: raw.CatalogCache}
	offline, err := parseBool("CATALOG_OFFLINE", raw.CatalogOff)
	errs = append(errs, err)
	j.Offline = offline
	switch u := j.URL; {
	case u == "":
	case strings.HasPrefix(u, "https://"):
		if pu, err := url.Parse(u); err != nil || pu.Host == "" {
			errs = append(errs, &Error{Var: "CATALOG_URL", Value: u, Accepted: "an https URL with a host, or a local JSON file", Err: err})
		}
	case strings.Contains(u, "://") && !strings.HasPrefix(u, "file://"):
		errs = append(errs, &Error{Var: "CATALOG_URL", Value: u, Accepted: "an https URL or a local JSON file (a plain-http catalog could be altered on the way, and it names the checksums images are verified against)"})
	default:
		errs = append(errs, checkFile("CATALOG_URL", strings.TrimPrefix(u, "file://"), "an https URL or a readable local JSON file"))
	}
	switch {
	case j.Cache == "" && j.Used():
		j.Cache = filepath.Join(cacheDir, "catalog.json")
	case j.Cache == "":
	case !j.Used():
		errs = append(errs, &Error{Var: "CATALOG_CACHE", Value: j.Cache, Accepted: "only together with CATALOG_URL or CATALOG_OFFLINE=1"})
	case !filepath.IsAbs(j.Cache):
		errs = append(errs, &Error{Var: "CATALOG_CACHE", Value: j.Cache, Accepted: "an absolute file path"})
	}
	return j, errors.Join(errs...)
}

func checkFile(name, path, accepted string) error {
	st, err := os.Stat(path)
	if err != nil {
		return &Error{Var: name, Value: path, Accepted: accepted, Err: err}
	}
	if st.IsDir() {
		return &Error{Var: name, Value: path, Accepted: accepted, Err: errors.New("is a directory")}
	}
	f, err := os.Open(path)
	if err != nil {
		return &Error{Var: name, Value: path, Accepted: accepted, Err: err}
	}
	return f.Close()
}

var (
	guestName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	qemuName  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.,=+-]*$`)
	userName  = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	qemuUser  = regexp.MustCompile(`^([a-z_][a-z0-9_.-]{0,31}|[0-9]{1,10}(:[0-9]{1,10})?)$`)
)

func loadMachine(c *Config, raw rawMachine, host Host) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	c.MemoryMiB, err = parseMemory(raw.Memory, host.MemoryMiB)
	add(err)
	c.CPUs, err = parseCPUs(raw.CPUs, host.CPUs)
	add(err)

	c.CPUModel = cpuModel(raw.CPUModel)
	if !qemuName.MatchString(raw.CPUModel) {
		add(&Error{Var: "CPU_MODEL", Value: raw.CPUModel, Accepted: "a QEMU -cpu model such as host, max or Skylake-Server"})
	}
	c.Machine = raw.Machine
	if raw.Machine != "" && !qemuName.MatchString(raw.Machine) {
		add(&Error{Var: "MACHINE", Value: raw.Machine, Accepted: "a QEMU -machine type such as q35 or pc (virt with ARCH=aarch64)"})
	}
	c.Accel, err = oneOf("ACCEL", raw.Accel, AccelAuto, AccelKVM, AccelTCG)
	add(err)
	c.RequireKVM, err = parseBool("REQUIRE_KVM", raw.RequireKVM)
	add(err)
	if c.RequireKVM && c.Accel == AccelTCG {
		add(&Error{Var: "ACCEL", Value: raw.Accel, Accepted: "auto or kvm when REQUIRE_KVM=1"})
	}
	add(loadState(c, raw.GuestName, raw.DataDir, raw.Distro, hostWithName(host, raw.Hostname)))
	c.DiskSize, err = parseDiskSize(raw.DiskSize, c.DataDir, host.FreeBytes)
	add(err)

	secs, err := strconv.Atoi(raw.ShutdownTimeout)
	if err != nil || secs < 0 || secs > 86400 {
		add(&Error{Var: "SHUTDOWN_TIMEOUT", Value: raw.ShutdownTimeout, Accepted: "whole seconds from 0 to 86400"})
	}
	c.ShutdownTimeout = time.Duration(secs) * time.Second
	if strings.TrimSpace(raw.KeepAlive) != "" { // unset: decided by loadRedfish
		c.KeepAlive, err = parseBool("KEEP_ALIVE_AFTER_VM_STOP", raw.KeepAlive)
		add(err)
	}
	c.PowerOnAtStart, err = parseBool("POWER_ON_AT_START", raw.PowerOnAtStart)
	add(err)

	c.ExtraArgs, err = SplitArgs(raw.ExtraArgs)
	if err != nil {
		add(&Error{Var: "EXTRA_ARGS", Value: raw.ExtraArgs, Accepted: "shell-quoted QEMU arguments", Err: err})
	}
	c.QEMUBinary = raw.QEMUBinary
	if raw.LogFormat != "" {
		c.LogFormat, err = oneOf("LOG_FORMAT", raw.LogFormat, "console", "json")
		add(err)
	}
	c.Verbose, err = parseBool("LOG_VERBOSE", raw.LogVerbose)
	add(err)
	c.SerialLogMax, err = parseSize("SERIAL_LOG_MAX", raw.SerialLogMax)
	add(err)
	c.Sandbox, err = parseBool("SANDBOX", raw.Sandbox)
	add(err)
	c.QEMUUser = strings.TrimSpace(raw.QEMUUser)
	if c.QEMUUser != "" && !qemuUser.MatchString(c.QEMUUser) {
		add(&Error{Var: "QEMU_USER", Value: raw.QEMUUser, Accepted: "a user name, uid or uid:gid, or root"})
	}
	return errors.Join(errs...)
}

// loadState sets GUEST_NAME and DATA_DIR, which name the state folder.
func loadState(c *Config, name, dataDir, distro string, host Host) error {
	var errs []error
	c.GuestName = name
	if c.GuestName == "" {
		c.GuestName = defaultGuestName(host, distro)
	}
	if !guestName.MatchString(c.GuestName) {
		errs = append(errs, &Error{Var: "GUEST_NAME", Value: c.GuestName, Accepted: "1-63 letters, digits and inner hyphens (it becomes the hostname and a folder name)"})
	}
	c.DataDir = dataDir
	if c.DataDir == "" {
		switch {
		case host.StateHome != "" && filepath.IsAbs(host.StateHome): // XDG: ignore relative values
			c.DataDir = filepath.Join(host.StateHome, "vmrunner")
		case host.HomeDir != "":
			c.DataDir = filepath.Join(host.HomeDir, ".local", "state", "vmrunner")
		default:
			errs = append(errs, &Error{Var: "DATA_DIR", Value: "", Accepted: "an absolute folder path (no HOME or XDG_STATE_HOME to default from)"})
		}
	} else if !filepath.IsAbs(c.DataDir) {
		errs = append(errs, &Error{Var: "DATA_DIR", Value: c.DataDir, Accepted: "an absolute folder path"})
	}
	c.DataDir = filepath.Clean(c.DataDir)
	return errors.Join(errs...)
}

// LoadState reads only GUEST_NAME and DATA_DIR, for `vmrunner health`: a
// running VM's probe must not fail because a file the rest of the
// configuration names was edited or removed since it started.
func LoadState(environ map[string]string, host Host) (*Config, error) {
	c := &Config{}
	distro := environ["DISTRO"]
	if distro == "" {
		distro = defaultDistro
	}
	if err := loadState(c, environ["GUEST_NAME"], environ["DATA_DIR"], distro, hostWithName(host, environ["HOSTNAME"])); err != nil {
		return nil, err
	}
	return c, nil
}

func parseBool(name, v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes":
		return true, nil
	case "0", "false", "no":
		return false, nil
	}
	return false, &Error{Var: name, Value: v, Accepted: "1/0, true/false or yes/no"}
}

// parseSize reads "20G", "512M", "1.5T", "20GiB" into bytes. A unit is
// required: a bare number is ambiguous for a disk.
func parseSize(name, v string) (int64, error) {
	bad := &Error{Var: name, Value: v, Accepted: "a size with a unit, such as 512M, 20G or 1T"}
	s := strings.TrimSpace(v)
	s = strings.TrimSuffix(strings.TrimSuffix(s, "B"), "i")
	if s == "" {
		return 0, bad
	}
	mult := map[byte]float64{'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}[upper(s[len(s)-1])]
	if mult == 0 {
		return 0, bad
	}
	f, err := strconv.ParseFloat(s[:len(s)-1], 64)
	if err != nil || !(f > 0) || f*mult > 1<<60 { // !(f > 0) also refuses NaN
		return 0, bad
	}
	n := int64(f*mult) &^ 511 // QEMU wants whole sectors
	if n == 0 {
		return 0, bad
	}
	return n, nil
}

func upper(b byte) byte {
	if 'a' <= b && b <= 'z' {
		return b - 'a' + 'A'
	}
	return b
}

func parseMemory(v string, hostMiB int) (int, error) {
	bad := &Error{Var: "MEMORY", Value: v, Accepted: "MiB (e.g. 4096), a size such as 2G, max or half; at least 64 MiB"}
	var mib int
	switch s := strings.ToLower(strings.TrimSpace(v)); {
	case s == "max":
		// QEMU itself and the supervisor need room beside the guest.
		mib = hostMiB - memoryReserveMiB
	case s == "half":
		mib = hostMiB / 2
	default:
		n, err := strconv.Atoi(s)
		if err != nil {
			b, serr := parseSize("MEMORY", v)
			if serr != nil {
				return 0, bad
			}
			n = int(b >> 20)
		}
		mib = n
	}
	if mib < 64 {
		return 0, bad
	}
	return mib, nil
}

func parseCPUs(v string, hostCPUs int) (int, error) {
	bad := &Error{Var: "CPUS", Value: v, Accepted: "a whole number from 1 to 255, max or half"}
	var n int
	switch s := strings.ToLower(strings.TrimSpace(v)); s {
	case "max":
		n = min(hostCPUs, 255)
	case "half":
		n = max(min(hostCPUs/2, 255), 1)
	default:
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			return 0, bad
		}
	}
	if n < 1 || n > 255 {
		return 0, bad
	}
	return n, nil
}

var models = map[string]string{
	"virtio":         "virtio-net-pci",
	"virtio-net-pci": "virtio-net-pci",
	"e1000":          "e1000",
	"e1000e":         "e1000e",
	"rtl8139":        "rtl8139",
	"vmxnet3":        "vmxnet3",
	"pcnet":          "pcnet",
	"ne2k_pci":       "ne2k_pci",
}

var ifName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

func loadNICs(c *Config, environ map[string]string) error {
	raws, err := readNumbered[rawNIC](environ, nicFamily)
	errs := []error{err}
	for _, r := range raws {
		nic, err := loadNIC(r.N, r.Raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if nic.Mode != NetNone {
			c.NICs = append(c.NICs, nic)
		}
	}
	return errors.Join(errs...)
}

func loadNIC(i int, raw rawNIC) (NIC, error) {
	p := nicPrefix(i)
	var errs []error
	n := NIC{Index: i}
	var err error
	n.Mode, err = oneOf(p+"MODE", raw.Mode, NetNAT, NetBridge, NetDirect, NetContainer, NetNone)
	errs = append(errs, err, loadNICAdditions(&n, raw))
	if n.Mode == NetBridge {
		if !ifName.MatchString(raw.Bridge) {
			errs = append(errs, &Error{Var: p + "BRIDGE", Value: raw.Bridge, Accepted: "a Linux interface name (1-15 of A-Z a-z 0-9 _ . -)"})
		}
		n.Bridge = raw.Bridge
	}
	if n.Mode == NetDirect {
		if !ifName.MatchString(raw.DirectDev) {
			errs = append(errs, &Error{Var: p + "DIRECT_DEV", Value: raw.DirectDev, Accepted: "a Linux interface name (1-15 of A-Z a-z 0-9 _ . -)"})
		}
		n.DirectDev = raw.DirectDev
	}
	model, ok := models[strings.ToLower(raw.Model)]
	if !ok {
		errs = append(errs, &Error{Var: p + "MODEL", Value: raw.Model, Accepted: "virtio, e1000, e1000e, rtl8139, vmxnet3, pcnet or ne2k_pci"})
	}
	n.Model = model
	if raw.MAC != "" {
		mac, err := net.ParseMAC(raw.MAC)
		if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
			errs = append(errs, &Error{Var: p + "MAC", Value: raw.MAC, Accepted: "a unicast MAC such as 52:54:00:12:34:56"})
		}
		n.MAC = mac
	}
	if raw.MTU != "" {
		mtu, err := strconv.Atoi(raw.MTU)
		if err != nil || mtu < 68 || mtu > 65535 {
			errs = append(errs, &Error{Var: p + "MTU", Value: raw.MTU, Accepted: "a whole number from 68 to 65535"})
		}
		n.MTU = mtu
	}
	return n, errors.Join(errs...)
}

func parsePort(name, v string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || p < 1 || p > 65535 {
		return 0, &Error{Var: name, Value: v, Accepted: "a port from 1 to 65535"}
	}
	return p, nil
}

// ParsePortFwd reads PORT_FWD's "host:guest[/proto],..." list.
func ParsePortFwd(v string) ([]PortFwd, error) {
	var out []PortFwd
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		bad := &Error{Var: "PORT_FWD", Value: v, Accepted: "host:guest[/tcp|/udp] items separated by commas, ports 1-65535, e.g. 8080:80,5353:53/udp",
			Err: fmt.Errorf("item %q", item)}
		spec, proto, hasProto := strings.Cut(item, "/")
		fw := PortFwd{Proto: TCP}
		if hasProto {
			switch Proto(strings.ToLower(proto)) {
			case TCP:
			case UDP:
				fw.Proto = UDP
			default:
				return nil, bad
			}
		}
		h, g, ok := strings.Cut(spec, ":")
		if !ok {
			return nil, bad
		}
		var err1, err2 error
		fw.HostPort, err1 = parsePort("PORT_FWD", h)
		fw.GuestPort, err2 = parsePort("PORT_FWD", g)
		if err1 != nil || err2 != nil {
			return nil, bad
		}
		out = append(out, fw)
	}
	return out, nil
}

func loadPorts(c *Config, raw rawMachine) error {
	var errs []error
	var err error
	// 0 turns the SSH forward off: nothing listens for it.
	if strings.TrimSpace(raw.SSHPort) != "0" {
		if c.SSHPort, err = parsePort("SSH_PORT", raw.SSHPort); err != nil {
			errs = append(errs, &Error{Var: "SSH_PORT", Value: raw.SSHPort, Accepted: "a port from 1 to 65535, or 0 for no SSH forward"})
		}
	}
	c.PortFwds, err = ParsePortFwd(raw.PortFwd)
	if err != nil {
		errs = append(errs, err)
	}
	if ip := net.ParseIP(raw.PortFwdAddr); ip == nil || ip.To4() == nil {
		errs = append(errs, &Error{Var: "PORT_FWD_ADDR", Value: raw.PortFwdAddr, Accepted: "an IPv4 address such as 0.0.0.0 or 127.0.0.1"})
	}
	c.PortFwdAddr = raw.PortFwdAddr
	return errors.Join(errs...)
}

// What CLOUD_INIT_USER_DATA and CLOUD_INIT_NETWORK_CONFIG accept, for
// their refusals here and in the plan.
const (
	UserDataAccepted      = "a readable cloud-init user-data file (#cloud-config YAML mapping, a script, or another cloud-init format)"
	NetworkConfigAccepted = "a readable cloud-init network-config file (a YAML mapping with version: 1 or 2)"
)

func loadCloudInit(c *Config, raw rawMachine) error {
	var errs []error
	var err error
	if c.CloudInit, err = parseBool("CLOUD_INIT", raw.CloudInit); err != nil {
		errs = append(errs, err)
	}
	c.GuestUser, c.GuestPassword, c.SSHPubKey = raw.GuestUser, raw.GuestPassword, strings.TrimSpace(raw.SSHPubKey)
	if !userName.MatchString(c.GuestUser) || c.GuestUser == "root" {
		errs = append(errs, &Error{Var: "GUEST_USER", Value: raw.GuestUser, Accepted: "a Linux user name other than root: lower-case letters, digits, _ and -, up to 32, not starting with a digit"})
	}
	if c.SSHPubKey != "" && (strings.ContainsAny(c.SSHPubKey, "\n\r") || len(strings.Fields(c.SSHPubKey)) < 2) {
		errs = append(errs, &Error{Var: "SSH_PUBKEY", Value: c.SSHPubKey, Accepted: "one OpenSSH public key line: TYPE BASE64 [COMMENT]"})
	}
	// Read here, validated by the plan (vm), which knows cloud-init.
	c.UserDataPath = raw.UserDataPath
	if raw.UserDataPath != "" {
		data, err := os.ReadFile(raw.UserDataPath)
		if err != nil {
			errs = append(errs, &Error{Var: "CLOUD_INIT_USER_DATA", Value: raw.UserDataPath, Accepted: UserDataAccepted, Err: err})
		}
		c.UserData = data
	}
	c.NetworkConfigPath = raw.NetConfigPath
	if raw.NetConfigPath != "" {
		data, err := os.ReadFile(raw.NetConfigPath)
		if err != nil {
			errs = append(errs, &Error{Var: "CLOUD_INIT_NETWORK_CONFIG", Value: raw.NetConfigPath, Accepted: NetworkConfigAccepted, Err: err})
		}
		c.NetworkConfig = data
	}
	return errors.Join(errs...)
}

func loadConsole(c *Config, raw rawMachine) error {
	return loadGraphics(c, raw)
}

// redfishID is what may stand in a URL path segment as the system's id.
var redfishID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// loadRedfish reads REDFISH_*; after loadMachine, which settles GUEST_NAME.
// Nothing may listen without auth, so the seed project's default password
// is refused rather than served.
func loadRedfish(c *Config, raw rawMachine) error {
	on, err := parseBool("REDFISH_ENABLE", raw.RedfishEnable)
	if err != nil || !on {
		return err
	}
	// The BMC must outlive the server it manages; an explicit 0 stays 0.
	if strings.TrimSpace(raw.KeepAlive) == "" {
		c.KeepAlive = true
	}
	var errs []error
	r := Redfish{Enabled: true, Listen: raw.RedfishListen, Username: raw.RedfishUser,
		Password: raw.RedfishPasswd, SystemID: raw.RedfishID, TLSCert: raw.RedfishCert, TLSKey: raw.RedfishKey}
	if r.Port, err = parsePort("REDFISH_PORT", raw.RedfishPort); err != nil {
		errs = append(errs, err)
	}
	if r.Listen != "" && net.ParseIP(r.Listen) == nil {
		errs = append(errs, &Error{Var: "REDFISH_LISTEN", Value: r.Listen, Accepted: "an IP address such as 127.0.0.1 or ::1, or unset for every address"})
	}
	if r.Username == "" || strings.ContainsAny(r.Username, ":\x00\r\n") || len(r.Username) > 64 {
		errs = append(errs, &Error{Var: "REDFISH_USERNAME", Value: r.Username, Accepted: "1-64 characters without ':' or control characters"})
	}
	switch {
	case r.Password == "":
		errs = append(errs, &Error{Var: "REDFISH_PASSWORD", Value: "", Accepted: "a password of your own, at least 8 characters, e.g. REDFISH_PASSWORD=$(openssl rand -base64 18); required with REDFISH_ENABLE=1"})
	case r.Password == "password":
		errs = append(errs, &Error{Var: "REDFISH_PASSWORD", Value: Masked,
			Accepted: "a password of your own (the seed project's default 'password' is refused: anyone who can reach the port could power the VM), e.g. REDFISH_PASSWORD=$(openssl rand -base64 18)"})
	case len(r.Password) < 8 || strings.ContainsAny(r.Password, "\x00\r\n"):
		errs = append(errs, &Error{Var: "REDFISH_PASSWORD", Value: "********", Accepted: "at least 8 characters, no control characters"})
	}
	if r.SystemID == "" {
		r.SystemID = c.GuestName
	}
	if !redfishID.MatchString(r.SystemID) {
		errs = append(errs, &Error{Var: "REDFISH_SYSTEM_ID", Value: r.SystemID, Accepted: "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"})
	}
	if (r.TLSCert == "") != (r.TLSKey == "") {
		errs = append(errs, &Error{Var: "REDFISH_TLS_CERT", Value: r.TLSCert, Accepted: "set together with REDFISH_TLS_KEY (" + r.TLSKey + "), or both unset for a self-signed certificate"})
	}
	for _, f := range [][2]string{{"REDFISH_TLS_CERT", r.TLSCert}, {"REDFISH_TLS_KEY", r.TLSKey}} {
		if f[1] != "" {
			if err := checkFile(f[0], f[1], "a readable PEM file"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	c.Redfish = r
	return errors.Join(errs...)
}

// checkPortCollisions rejects two listeners on one host port: the NAT
// forwards and VNC all listen in the same network namespace.
func checkPortCollisions(c *Config) error {
	if firstNAT(c) == nil {
		if len(c.PortFwds) > 0 {
			return &Error{Var: "PORT_FWD", Value: fmt.Sprintf("%d:%d", c.PortFwds[0].HostPort, c.PortFwds[0].GuestPort),
				Accepted: "forwards only together with a NIC in nat mode (e.g. NETWORK2_MODE=nat)"}
		}
		return nil
	}
	type key struct {
		proto Proto
		port  int
	}
	owner := map[key]string{}
	if c.SSHPort != 0 {
		owner[key{TCP, c.SSHPort}] = "SSH_PORT"
	}
	for _, l := range []struct {
		name string
		port int
	}{{"VNC_PORT", c.VNCPort}, {"NOVNC_PORT", c.Console.NoVNC.Port}} {
		if l.port == 0 {
			continue
		}
		if o, dup := owner[key{TCP, l.port}]; dup {
			return &Error{Var: l.name, Value: strconv.Itoa(l.port), Accepted: "a port not already used by " + o}
		}
		owner[key{TCP, l.port}] = l.name
	}
	if c.Redfish.Enabled {
		if o, dup := owner[key{TCP, c.Redfish.Port}]; dup {
			return &Error{Var: "REDFISH_PORT", Value: strconv.Itoa(c.Redfish.Port), Accepted: "a port not already used by " + o}
		}
		owner[key{TCP, c.Redfish.Port}] = "REDFISH_PORT"
	}
	if c.IPMI.Enabled {
		owner[key{UDP, c.IPMI.Port}] = "IPMI_PORT"
	}
	for _, f := range c.PortFwds {
		k := key{f.Proto, f.HostPort}
		if o, dup := owner[k]; dup {
			return &Error{Var: "PORT_FWD", Value: fmt.Sprintf("%d:%d/%s", f.HostPort, f.GuestPort, f.Proto),
				Accepted: fmt.Sprintf("host ports not already used by %s (%d/%s)", o, f.HostPort, f.Proto)}
		}
		owner[k] = "PORT_FWD"
	}
	return nil
}

func firstNAT(c *Config) *NIC {
	for i := range c.NICs {
		if c.NICs[i].Mode == NetNAT {
			return &c.NICs[i]
		}
	}
	return nil
}

// FirstNAT returns the NIC that carries SSH_PORT and PORT_FWD, or nil.
func (c *Config) FirstNAT() *NIC { return firstNAT(c) }
