package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/caarlos0/env/v11"
)

// rawHardware holds the variables that came with the seed project
// (docker-vm-runner), under the same names and meanings: its users keep
// their docker run lines and .env files (docs/migrating.md).
type rawHardware struct {
	NoConsole       string `env:"NO_CONSOLE" envDefault:"0" help:"1: do not attach the serial console to stdin/stdout (it still goes to serial.log); as --no-console"`
	GuestShell      string `env:"GUEST_SHELL" help:"login shell of GUEST_USER in the guest, an absolute path (default /bin/bash)"`
	Shell           string `env:"SHELL" help:"the seed project's name for GUEST_SHELL, read only when vmrunner is PID 1 (a container's entrypoint): a login shell sets SHELL for every program it starts"`
	BootOrder       string `env:"BOOT_ORDER" help:"boot devices in order, comma separated: hd, cdrom, network (default: cdrom,hd; network boots the boot NIC: NETWORK_BOOT's, else the first)"`
	ForceISO        string `env:"FORCE_ISO" envDefault:"0" help:"1: boot an .iso BOOT_FROM again although the VM's disk already exists (default: the installed disk boots, the ISO stays attached behind it)"`
	BlankDisk       string `env:"BLANK_DISK" envDefault:"0" help:"1: a blank disk of DISK_SIZE instead of the catalog image (as BOOT_FROM=blank)"`
	DownloadRetries string `env:"DOWNLOAD_RETRIES" envDefault:"5" help:"retries of a failing image download (with backoff doubling from 1 s up to 30 s); a try that brought new bytes resets the count"`
	Allocate        string `env:"ALLOCATE" envDefault:"0" help:"1: preallocate the disks vmrunner creates (qcow2 metadata, falloc for blank disks)"`
	USB             string `env:"USB" envDefault:"0" help:"1: a USB controller (qemu-xhci) with a tablet"`
	Balloon         string `env:"BALLOON" envDefault:"0" help:"1: a virtio memory balloon"`
	RNG             string `env:"RNG" envDefault:"1" help:"0: no virtio RNG (guests then gather entropy slowly)"`
	IOThread        string `env:"IO_THREAD" envDefault:"0" help:"1: virtio disks do their I/O in their own thread (iothread)"`
	HyperV          string `env:"HYPERV" envDefault:"0" help:"1: Hyper-V enlightenments on -cpu, for Windows guests"`
	TPM             string `env:"TPM" envDefault:"auto" help:"a TPM 2.0 emulated by swtpm, its state kept in the state folder: auto (on with BOOT_MODE=secure when swtpm is installed), 1 (swtpm required) or 0"`
	GPU             string `env:"GPU" envDefault:"off" help:"off, or intel: a virtio GPU with 3D (virgl) rendered on the host's render node; works with GRAPHICS=vnc/novnc"`
	RenderNode      string `env:"GPU_RENDER_NODE" help:"the host render node GPU=intel renders on (default: the first /dev/dri/renderD* that opens read-write)"`
}

// Hardware is the seed project's machine and console options.
type Hardware struct {
	NoConsole       bool
	Shell           string   // "": the built-in default
	BootOrder       []string // BootHD, BootCDROM, BootNetwork; empty: cdrom, hd
	ForceISO        bool
	DownloadRetries int
	Allocate        bool
	USB             bool
	Balloon         bool
	RNG             bool
	IOThread        bool
	HyperV          bool
	TPM             TPMSetting
	GPU             string // "" (off) or GPUIntel
	RenderNode      string // GPU_RENDER_NODE; "": the first render node that opens
}

// TPMSetting is TPM: auto gives the VM a TPM when it boots with Secure
// Boot, as the seed project does.
type TPMSetting string

const (
	TPMAuto TPMSetting = "auto"
	TPMOn   TPMSetting = "on"
	TPMOff  TPMSetting = "off"
)

// GPUIntel is GPU=intel: virgl on a host render node (any vendor's
// render node works; the seed project named it after Intel's iGPUs).
const GPUIntel = "intel"

// Boot devices of BOOT_ORDER.
const (
	BootHD      = "hd"
	BootCDROM   = "cdrom"
	BootNetwork = "network"
)

var shellPath = regexp.MustCompile(`^/[A-Za-z0-9_./+-]+$`)

func loadHardware(c *Config, environ map[string]string, pid1 bool) error {
	var raw rawHardware
	if err := env.ParseWithOptions(&raw, env.Options{Environment: environ}); err != nil {
		return fmt.Errorf("reading environment: %w", err)
	}
	var errs []error
	flag := func(name, v string) bool {
		b, err := parseBool(name, v)
		if err != nil {
			errs = append(errs, err)
		}
		return b
	}
	h := &c.Hardware
	h.NoConsole = flag("NO_CONSOLE", raw.NoConsole)
	h.ForceISO = flag("FORCE_ISO", raw.ForceISO)
	h.Allocate = flag("ALLOCATE", raw.Allocate)
	h.USB = flag("USB", raw.USB)
	h.Balloon = flag("BALLOON", raw.Balloon)
	h.RNG = flag("RNG", raw.RNG)
	h.IOThread = flag("IO_THREAD", raw.IOThread)
	h.HyperV = flag("HYPERV", raw.HyperV)
	errs = append(errs, loadGPU(h, raw))
	switch v := strings.ToLower(strings.TrimSpace(raw.TPM)); v {
	case "auto", "":
		h.TPM = TPMAuto
	default:
		on, err := parseBool("TPM", v)
		if err != nil {
			errs = append(errs, &Error{Var: "TPM", Value: raw.TPM, Accepted: "auto (on with BOOT_MODE=secure), 1 or 0"})
		}
		h.TPM = map[bool]TPMSetting{true: TPMOn, false: TPMOff}[on]
	}
	if flag("BLANK_DISK", raw.BlankDisk) {
		switch {
		case c.Boot.Path != "" || c.Boot.URL != "":
			errs = append(errs, &Error{Var: "BLANK_DISK", Value: raw.BlankDisk, Accepted: "0 together with BOOT_FROM (BOOT_FROM=blank is the same as BLANK_DISK=1)"})
		default:
			c.Boot = BootSource{Blank: true}
		}
	}
	shellVar, shell := "GUEST_SHELL", raw.GuestShell
	if shell == "" && pid1 {
		shellVar, shell = "SHELL", raw.Shell
	}
	if shell != "" {
		if !shellPath.MatchString(shell) || filepath.Clean(shell) != shell {
			errs = append(errs, &Error{Var: shellVar, Value: shell, Accepted: "an absolute path such as /bin/bash or /bin/sh"})
		}
		h.Shell = shell
	}
	var err error
	if h.BootOrder, err = ParseBootOrder(raw.BootOrder); err != nil {
		errs = append(errs, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(raw.DownloadRetries))
	if err != nil || n < 0 || n > 100 {
		errs = append(errs, &Error{Var: "DOWNLOAD_RETRIES", Value: raw.DownloadRetries, Accepted: "a whole number from 0 to 100"})
	}
	h.DownloadRetries = n
	return errors.Join(errs...)
}

// loadGPU reads GPU and GPU_RENDER_NODE. A named render node is checked
// here, as QEMU will open it; finding one is the host probe's job
// (vm.Facts.RenderNodes).
func loadGPU(h *Hardware, raw rawHardware) error {
	switch strings.ToLower(strings.TrimSpace(raw.GPU)) {
	case "off", "none", "0", "":
	case GPUIntel:
		h.GPU = GPUIntel
	default:
		return &Error{Var: "GPU", Value: raw.GPU, Accepted: "off, or intel (virgl 3D on a host render node)"}
	}
	if raw.RenderNode == "" {
		return nil
	}
	accepted := "a render node (character device) vmrunner may open read-write, such as /dev/dri/renderD128; only with GPU=intel"
	if h.GPU == "" {
		return &Error{Var: "GPU_RENDER_NODE", Value: raw.RenderNode, Accepted: accepted}
	}
	if !filepath.IsAbs(raw.RenderNode) {
		return &Error{Var: "GPU_RENDER_NODE", Value: raw.RenderNode, Accepted: accepted, Err: errors.New("not an absolute path")}
	}
	st, err := os.Stat(raw.RenderNode)
	if err == nil && st.Mode()&os.ModeCharDevice == 0 {
		err = errors.New("not a character device")
	}
	if err == nil {
		var f *os.File
		if f, err = os.OpenFile(raw.RenderNode, os.O_RDWR, 0); err == nil {
			f.Close()
		}
	}
	if err != nil {
		return &Error{Var: "GPU_RENDER_NODE", Value: raw.RenderNode, Accepted: accepted, Err: err}
	}
	h.RenderNode = raw.RenderNode
	return nil
}

// ParseBootOrder reads BOOT_ORDER: each of hd, cdrom and network at most
// once. "" gives nil, which keeps the default order (cdrom, hd).
func ParseBootOrder(v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var order []string
	for _, item := range strings.Split(v, ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		switch item {
		case "disk":
			item = BootHD
		case "cd", "iso":
			item = BootCDROM
		case "net", "pxe":
			item = BootNetwork
		}
		if !slices.Contains([]string{BootHD, BootCDROM, BootNetwork}, item) || slices.Contains(order, item) {
			return nil, &Error{Var: "BOOT_ORDER", Value: v, Accepted: "hd, cdrom and network, each at most once, comma separated (e.g. cdrom,hd)"}
		}
		order = append(order, item)
	}
	return order, nil
}

// refusedBootFrom is the advice for a BOOT_FROM the seed project takes and
// vmrunner does not; "" when vmrunner takes it.
func refusedBootFrom(v string) string {
	lower := strings.ToLower(v)
	if strings.HasPrefix(lower, "docker://") || strings.HasPrefix(lower, "oci://") || ociReference.MatchString(v) {
		return "a local image file, an http(s) URL or 'blank': OCI references (containerDisks) are not supported yet (issue 14); copy the disk out with `docker create` + `docker cp IMAGE:/disk/` and point BOOT_FROM at it"
	}
	return ""
}

// ociReference matches a registry reference such as
// quay.io/containerdisks/fedora:40 or ghcr.io/x/y@sha256:…: a host with a
// dot or a port, a path, and a tag or digest. A local path starts with /
// or . and is not matched.
var ociReference = regexp.MustCompile(`^[a-z0-9-]+(\.[a-z0-9-]+)+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$`)

// defaultDistro is DISTRO's default; the envDefault tag says the same.
const defaultDistro = "ubuntu-2404"

// memoryReserveMiB is what MEMORY=max leaves to QEMU and vmrunner, as the
// seed project does.
const memoryReserveMiB = 512

// defaultGuestName names the VM when GUEST_NAME is unset: the hostname
// (a container's is its name or id; an FQDN gives its first label), else
// the DISTRO name, else "vm".
func defaultGuestName(host Host, distro string) string {
	for _, n := range []string{host.Hostname, distro} {
		n, _, _ = strings.Cut(n, ".")
		if guestName.MatchString(n) {
			return n
		}
	}
	return "vm"
}

// parseDiskSize reads DISK_SIZE: a size, or max (90 % of the space free
// in DATA_DIR) or half (half of it), as the seed project does.
func parseDiskSize(v, dataDir string, free func(string) (int64, error)) (int64, error) {
	share := map[string]int64{"max": 90, "half": 50}[strings.ToLower(strings.TrimSpace(v))]
	if share == 0 {
		return parseSize("DISK_SIZE", v)
	}
	accepted := "a size with a unit such as 20G, or max/half of the space free in DATA_DIR"
	if free == nil {
		return 0, &Error{Var: "DISK_SIZE", Value: v, Accepted: accepted, Err: errors.New("the free space of DATA_DIR is unknown")}
	}
	n, err := free(dataDir)
	if err != nil {
		return 0, &Error{Var: "DISK_SIZE", Value: v, Accepted: accepted, Err: err}
	}
	size := (n / 100 * share) &^ 511 // QEMU wants whole sectors
	if size < 1<<20 {
		return 0, &Error{Var: "DISK_SIZE", Value: v, Accepted: accepted, Err: fmt.Errorf("%d bytes free in %s", n, dataDir)}
	}
	return size, nil
}

// effective is --show-config's view of h, in --help order.
func (h Hardware) effective() [][2]string {
	shell := h.Shell
	if shell == "" {
		shell = "(built-in: /bin/bash)"
	}
	order := strings.Join(h.BootOrder, ",")
	if order == "" {
		order = "(cdrom,hd)"
	}
	b := func(v bool) string { return map[bool]string{true: "1", false: "0"}[v] }
	gpu, node := "off", h.RenderNode
	if h.GPU != "" {
		gpu = h.GPU
		if node == "" {
			node = "(the first /dev/dri/renderD* that opens)"
		}
	}
	return [][2]string{
		{"NO_CONSOLE", b(h.NoConsole)}, {"SHELL", shell}, {"BOOT_ORDER", order},
		{"FORCE_ISO", b(h.ForceISO)}, {"DOWNLOAD_RETRIES", strconv.Itoa(h.DownloadRetries)},
		{"ALLOCATE", b(h.Allocate)}, {"USB", b(h.USB)}, {"BALLOON", b(h.Balloon)},
		{"RNG", b(h.RNG)}, {"IO_THREAD", b(h.IOThread)}, {"HYPERV", b(h.HyperV)},
		{"TPM", string(h.TPM)}, {"GPU", gpu}, {"GPU_RENDER_NODE", node},
	}
}

// hostWithName is host with $HOSTNAME, when set, as its hostname: the seed
// project names the VM after $HOSTNAME, which Docker sets.
func hostWithName(host Host, hostname string) Host {
	if hostname != "" {
		host.Hostname = hostname
	}
	return host
}

// cpuModel maps libvirt's CPU mode names, which the seed project took, to
// QEMU's.
func cpuModel(v string) string {
	if strings.EqualFold(v, "host-passthrough") || strings.EqualFold(v, "host-model") {
		return "host"
	}
	return v
}

// downloadEffective is --show-config's view of the download settings.
func (c *Config) downloadEffective() [][2]string {
	if !c.Boot.Downloads() {
		return nil
	}
	return [][2]string{{"DOWNLOAD_MAX_SIZE", fmt.Sprintf("%dM", c.MediaMaxSize>>20)}, {"EXTRACT_MAX_SIZE", fmt.Sprintf("%dM", c.MediaMaxUnpacked>>20)}}
}
