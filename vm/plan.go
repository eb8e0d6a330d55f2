package vm

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vmrunner/vmrunner/cloudinit"
	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/image"
	"github.com/vmrunner/vmrunner/netcfg"
	"github.com/vmrunner/vmrunner/qemu"
)

// Facts are what start-up learns from the host; Plan depends on nothing else.
type Facts struct {
	KVMUsable      bool   // KVM ran a test guest (ProbeKVM)
	KVMWhy         string // why not, when it did not
	VhostNet       bool   // /dev/vhost-net opens
	VhostAdvice    string // how to give the container the host's vhost-net; "" when it has it or the host lacks it
	HostIPv6       bool
	DefaultMTU     int
	FirmwareExists func(string) bool
	KeptMACs       map[int]string         // content of mac-N files
	Links          map[string]netcfg.Link // bridges and parent NICs the NICs name; absent: missing
	NoDirectIO     bool                   // the state folder's filesystem refuses O_DIRECT
	DataDirMounted bool                   // DATA_DIR is a mount point (a volume)
	Virtiofsd      string                 // FindVirtiofsd; "": virtiofs shares fall back to 9p
	Swtpm          string                 // FindSwtpm; "": no TPM (TPM=1 is refused)
	RenderNodes    []string               // FindRenderNodes: what GPU=intel may render on
	HostArch       config.Arch            // config.HostArch; "": x86_64
	VirglMissing   bool                   // VirglModuleMissing: GPU=intel is refused
	// BootImage is the local BOOT_FROM as inspected (InspectBootImage),
	// or BootImageErr why it is refused.
	BootImage    *BootImage
	BootImageErr error
	// Catalog is where DISTRO is looked up (ReadCatalog), or the error
	// reading CATALOG; nil and nil: the built-in catalog alone.
	Catalog    *image.Catalog
	CatalogErr error
}

// Paths are the files of the state folder.
type Paths struct {
	State, Disk, Seed, Vars, QMP, QMPProbe, SerialLog, Lock, Salt, UUID, Control string
	// VNCPassword holds the VNC password QEMU reads (0600); VNCDir (0700)
	// guards VNCSocket, the web console's listener, which has no VNC auth.
	VNCPassword, VNCDir, VNCSocket string
	QGA                            string // the guest agent's socket
}

// PathsFor lays out DATA_DIR/vms/GUEST_NAME/.
func PathsFor(c *config.Config) Paths {
	s := c.StateDir()
	return Paths{
		State:     s,
		Disk:      filepath.Join(s, "disk.qcow2"),
		Seed:      filepath.Join(s, "seed.iso"),
		Vars:      filepath.Join(s, "efivars.fd"),
		QMP:       filepath.Join(s, "qmp.sock"),
		QMPProbe:  filepath.Join(s, "qmp-probe.sock"),
		SerialLog: filepath.Join(s, "serial.log"),
		Lock:      filepath.Join(s, "lock"),
		Salt:      filepath.Join(s, "password-salt"),
		QGA:       filepath.Join(s, "qga.sock"),
		UUID:      filepath.Join(s, "uuid"),
		Control:   ControlSocket(s),

		VNCPassword: filepath.Join(s, "vnc-password"),
		VNCDir:      filepath.Join(s, "vnc"),
		VNCSocket:   filepath.Join(s, "vnc", "web.sock"), // not longer than QMPProbe
	}
}

// ControlSocket is the controller's socket in the state folder stateDir;
// clients find it from DATA_DIR and GUEST_NAME alone.
func ControlSocket(stateDir string) string { return filepath.Join(stateDir, "control.sock") }

// ExtraDisk is where DISKn_SIZE's disk lives.
func (p Paths) ExtraDisk(n int) string {
	return filepath.Join(p.State, fmt.Sprintf("disk%d.qcow2", n))
}

// NICPlan is one NIC with everything decided.
type NICPlan struct {
	config.NIC
	MAC net.HardwareAddr
	MTU int
	// Vhost: open /dev/vhost-net for the NIC's tap (bridge and direct,
	// when the host has it).
	Vhost bool
	Link  *HostLink // set for bridge and direct: the tap or macvtap to create
}

// Plan is the whole decided VM: QEMU's spec plus what start-up must create.
type Plan struct {
	Config *config.Config
	Paths  Paths
	Spec   qemu.Spec
	NICs   []NICPlan
	// Base is what a local BOOT_FROM becomes (Facts.BootImage): the disk's
	// base, or an installer CD; nil for a download (decided once fetched),
	// blank or no disk.
	Base *BaseChoice
	// Download fetches the base image: BOOT_FROM's URL or DISTRO's
	// catalog entry (Progress and Log are start-up's to add); nil without.
	Download *image.FetchRequest
	// Firmwares are the UEFI firmwares found on the host, by boot mode
	// (uefi, secure): BOOT_MODE's, and those a switch may choose.
	Firmwares map[config.BootMode]Firmware
	Persist   bool // keep the state folder when the VM ends
	Warnings  []string
	// Arch is the guest's architecture (ARCH, else the DISTRO entry's,
	// else the host's); QEMUBinary the program that runs it.
	Arch       config.Arch
	QEMUBinary string
	// Virtiofsd are the daemons of the virtiofs shares; Mounts what the
	// guest mounts (cloud-init).
	Virtiofsd []VirtiofsdPlan
	Mounts    []cloudinit.Mount
	TPM       *TPMPlan // nil: no run has a TPM
}

// Firmware is a UEFI code file and the template of its variables.
type Firmware struct {
	Code, VarsTemplate string
}

// maxSocketPath is sun_path's size less its terminating NUL.
const maxSocketPath = 107

// MakePlan decides everything about the VM without touching the host.
func MakePlan(c *config.Config, f Facts) (*Plan, error) {
	p := &Plan{Config: c, Paths: PathsFor(c), Persist: DecidePersist(c.Persist, f.DataDirMounted)}
	machine, err := p.planArch(f)
	if err != nil {
		return nil, err
	}
	kvmUsable, kvmWhy := f.KVMUsable, f.KVMWhy
	if why := foreignArch(p.Arch, f.HostArch); why != "" {
		if err := foreignKVM(c, why); err != nil {
			return nil, err
		}
		kvmUsable, kvmWhy = false, why
	}
	accel, warn, err := ResolveAccel(c.Accel, c.RequireKVM, kvmUsable, kvmWhy)
	if err != nil {
		return nil, err
	}
	if warn != "" {
		p.Warnings = append(p.Warnings, warn)
	}
	s := qemu.Spec{
		Name:       c.GuestName,
		Machine:    machine,
		Accel:      accel,
		CPU:        ResolveCPU(c.CPUModel, accel),
		MemoryMiB:  c.MemoryMiB,
		CPUs:       c.CPUs,
		Sandbox:    c.Sandbox,
		Kernel:     c.Kernel,
		Initrd:     c.Initrd,
		Cmdline:    c.KernelCmdline,
		QMPSockets: []string{p.Paths.QMP, p.Paths.QMPProbe},
		Display:    planDisplay(c.Console, c.VNCPort, p.Paths, p.Arch),
		GuestAgent: p.Paths.QGA,
		Extra:      c.ExtraArgs,
	}
	p.Firmwares = map[config.BootMode]Firmware{}
	for _, mode := range []config.BootMode{config.BootUEFI, config.BootSecure} {
		if f.FirmwareExists == nil {
			break
		}
		if code, vars, err := FirmwareFiles(p.Arch, mode, f.FirmwareExists); err == nil {
			p.Firmwares[mode] = Firmware{Code: code, VarsTemplate: vars}
		}
	}
	if err := planHardware(&s, c); err != nil {
		return nil, err
	}
	if err := p.planTPM(f); err != nil {
		return nil, err
	}
	s.TPM = p.tpmSpec(c.BootMode)
	if err := p.planGPU(&s, f); err != nil {
		return nil, err
	}
	if w := shellWarning(c); w != "" {
		p.Warnings = append(p.Warnings, w)
	}
	if c.BootMode != config.BootLegacy {
		code, _, err := FirmwareFiles(p.Arch, c.BootMode, f.FirmwareExists)
		if err != nil {
			return nil, err
		}
		s.Firmware = &qemu.Firmware{Code: code, Vars: p.Paths.Vars, Secure: c.BootMode == config.BootSecure}
	}
	switch {
	case c.Boot.Path != "":
		if f.BootImageErr != nil {
			return nil, f.BootImageErr
		}
		if f.BootImage == nil {
			return nil, fmt.Errorf("BOOT_FROM %s: no inspection of it in the host facts (InspectBootImage)", c.Boot.Path)
		}
		b := chooseBase(*f.BootImage, c.CacheDir())
		p.Base = &b
		s.Disk = p.Paths.Disk
	case c.Boot.Downloads():
		if p.Download, err = planDownload(c, f); err != nil {
			return nil, err
		}
		s.Disk = p.Paths.Disk
	case c.Boot.Blank:
		s.Disk = p.Paths.Disk
	}
	if err := p.planDisks(&s, f); err != nil {
		return nil, err
	}
	if err := checkCloudInit(c); err != nil {
		return nil, err
	}
	if c.CloudInit {
		s.Seed = p.Paths.Seed
	}
	if err := p.planShares(&s, f); err != nil {
		return nil, err
	}
	for _, n := range c.NICs {
		np := NICPlan{NIC: n}
		if np.MAC, err = netcfg.ChooseMAC(n.MAC, f.KeptMACs[n.Index], c.GuestName, n.Index); err != nil {
			return nil, fmt.Errorf("NIC %d: %w", n.Index, err)
		}
		np.MTU = netcfg.ChooseMTU(n.MTU, n.Index, f.DefaultMTU)
		if err := p.planHostLink(&np, f); err != nil {
			return nil, err
		}
		qn := qemu.NIC{ID: fmt.Sprintf("net%d", n.Index), Model: n.Model, MAC: np.MAC.String(), MTU: np.MTU,
			Boot: n.Index == c.BootNIC().Index}
		if qn.Boot && c.IPXE.Enabled {
			if qn.ROMFile, err = ipxeROM(c, n, f.FirmwareExists); err != nil {
				return nil, err
			}
			// Debian's virtio ROMs are for the modern device (see
			// qemu.NIC.ModernOnly); a ROM of the user's is taken as is.
			qn.ModernOnly = n.Model == "virtio-net-pci" && c.IPXE.ROMPath == ""
			if n.Mode == config.NetNAT {
				p.Warnings = append(p.Warnings, fmt.Sprintf("IPXE_ENABLE=1 on NIC %d in nat mode: QEMU's user network answers DHCP but serves no boot file; "+
					"a PXE server needs %sMODE=bridge, direct or container", n.Index, n.Prefix()))
			}
		}
		switch n.Mode {
		case config.NetNAT:
			u := natBackend(n, f.HostIPv6)
			if n.GuestIP6.IsValid() && !f.HostIPv6 {
				p.Warnings = append(p.Warnings, fmt.Sprintf("%sGUEST_IP6=%s: this host has no IPv6, so NIC %d's nat network has none", n.Prefix(), n.GuestIP6, n.Index))
			}
			if n.Index == c.FirstNAT().Index {
				u.Forwards = forwards(c)
			}
			qn.Backend = u
		case config.NetBridge, config.NetDirect, config.NetContainer:
			// By name until start-up opens it and numbers its fds
			// (attachTaps).
			np.Vhost = f.VhostNet
			qn.Backend = qemu.TapNet{FD: -1, Ifname: np.Link.Name, VhostFD: -1}
		}
		p.NICs = append(p.NICs, np)
		s.NICs = append(s.NICs, qn)
		if np.Link != nil && !np.Vhost && f.VhostAdvice != "" && !slices.Contains(p.Warnings, f.VhostAdvice) {
			p.Warnings = append(p.Warnings, f.VhostAdvice)
		}
	}
	if err := checkSocketPaths(c.DataDir, p.sockets(s)); err != nil {
		return nil, err
	}
	p.Spec = s
	return p, nil
}

// sockets are the unix sockets of the VM's state folder that a run of s
// listens on.
func (p *Plan) sockets(s qemu.Spec) []string {
	out := append([]string{p.Paths.Control, p.Paths.QGA}, s.QMPSockets...)
	if s.Display != nil && s.Display.Socket != "" {
		out = append(out, s.Display.Socket)
	}
	for _, sh := range s.Shares {
		if sh.Virtiofs {
			out = append(out, sh.Socket)
		}
	}
	if p.TPM != nil {
		out = append(out, p.TPM.Socket)
	}
	return out
}

// checkSocketPaths refuses a DATA_DIR so deep that a socket path would not
// fit sun_path: QEMU and virtiofsd would fail at start, far from the cause.
func checkSocketPaths(dataDir string, sockets []string) error {
	longest := slices.MaxFunc(sockets, func(a, b string) int { return len(a) - len(b) })
	if len(longest) > maxSocketPath {
		return &config.Error{Var: "DATA_DIR", Value: dataDir,
			Accepted: fmt.Sprintf("a path short enough for unix sockets (%s is over %d bytes)", longest, maxSocketPath)}
	}
	return nil
}

// planDisks adds the extra disks and host devices after the VM's own disk,
// and decides the bus and cache mode they all share.
func (p *Plan) planDisks(s *qemu.Spec, f Facts) error {
	c := p.Config
	for _, d := range c.ExtraDisks {
		s.MoreDisks = append(s.MoreDisks, qemu.Drive{ID: fmt.Sprintf("disk%d", d.Index), Path: p.Paths.ExtraDisk(d.Index), Format: "qcow2"})
	}
	for _, d := range c.Devices {
		s.MoreDisks = append(s.MoreDisks, qemu.Drive{ID: fmt.Sprintf("dev%d", d.Index), Path: d.Path, Format: "raw"})
	}
	s.DiskBus = string(c.DiskBus)
	n := len(s.MoreDisks)
	if s.Disk != "" {
		n++
	}
	if slots := qemu.IDESlots(s.Machine); c.DiskBus == config.BusIDE && n > slots {
		return &config.Error{Var: "DISK_TYPE", Value: string(c.DiskBus),
			Accepted: fmt.Sprintf("virtio, scsi or nvme for %d disks (MACHINE=%s takes %d IDE disks)", n, s.Machine, slots)}
	}
	var warn string
	s.DiskCache, s.DiskAIO, warn = ResolveDiskCache(c.DiskCache, c.DiskIO, !f.NoDirectIO)
	if warn != "" && n > 0 {
		p.Warnings = append(p.Warnings, warn)
	}
	return nil
}

// natBackend is a nat NIC's user network: QEMU's default one, or the
// subnet of NETWORK_GUEST_IP (and NETWORK_GUEST_IP6) with the guest's
// address as its first DHCP lease, where the forwards also go.
func natBackend(n config.NIC, ipv6 bool) qemu.UserNet {
	u := qemu.UserNet{IPv6: ipv6}
	nat := config.NATNetFor(n.GuestIP, n.GuestIP6)
	if n.GuestIP.IsValid() {
		u.Net, u.Host, u.DHCPStart, u.DNS = nat.Net.String(), nat.Host.String(), nat.Guest.String(), nat.DNS.String()
	}
	if n.GuestIP6.IsValid() && ipv6 {
		u.IPv6Net, u.IPv6Host, u.IPv6DNS = nat.Net6.String(), nat.Host6.String(), nat.DNS6.String()
	}
	return u
}

// ipxeDirs are where Debian's ipxe-qemu puts its ROMs and where QEMU's own
// data folder links them.
var ipxeDirs = []string{"/usr/lib/ipxe/qemu", "/usr/share/qemu"}

// ipxeStems name the ROM of each NIC model (pxe-STEM.rom, efi-STEM.rom).
var ipxeStems = map[string]string{"virtio-net-pci": "virtio", "e1000": "e1000", "e1000e": "e1000e", "rtl8139": "rtl8139",
	"vmxnet3": "vmxnet3", "pcnet": "pcnet", "ne2k_pci": "ne2k_pci"}

// ipxeROM is the option ROM of the boot NIC with IPXE_ENABLE=1:
// IPXE_ROM_PATH, else ipxe-qemu's ROM of the NIC's model. efi-*.rom holds
// both the BIOS and the UEFI driver; pxe-*.rom, the seed project's choice,
// only the BIOS one, so it is preferred with BOOT_MODE=legacy alone.
func ipxeROM(c *config.Config, n config.NIC, exists func(string) bool) (string, error) {
	if c.IPXE.ROMPath != "" {
		return absPath(c.IPXE.ROMPath)
	}
	kinds := []string{"efi", "pxe"}
	if c.BootMode == config.BootLegacy {
		kinds = []string{"pxe", "efi"}
	}
	var tried []string
	for _, kind := range kinds {
		for _, dir := range ipxeDirs {
			path := filepath.Join(dir, kind+"-"+ipxeStems[n.Model]+".rom")
			if exists != nil && exists(path) {
				return path, nil
			}
			tried = append(tried, path)
		}
	}
	return "", &config.Error{Var: "IPXE_ENABLE", Value: "1", Err: fmt.Errorf("no iPXE ROM for %s: tried %s", n.Model, strings.Join(tried, ", ")),
		Accepted: "0, or install Debian's ipxe-qemu (apt-get install ipxe-qemu), or name the ROM with IPXE_ROM_PATH"}
}

func forwards(c *config.Config) []qemu.Forward {
	var fw []qemu.Forward
	if c.SSHPort != 0 {
		fw = append(fw, qemu.Forward{Proto: "tcp", HostAddr: c.PortFwdAddr, HostPort: c.SSHPort, GuestPort: 22})
	}
	for _, f := range c.PortFwds {
		fw = append(fw, qemu.Forward{Proto: string(f.Proto), HostAddr: c.PortFwdAddr, HostPort: f.HostPort, GuestPort: f.GuestPort})
	}
	return fw
}

// bootDevices are BOOT_ORDER's words as the spec's boot devices.
var bootDevices = map[string]qemu.BootDevice{
	config.BootHD:      qemu.BootDisk,
	config.BootCDROM:   qemu.BootCD,
	config.BootNetwork: qemu.BootNetwork,
}

// planHardware carries BOOT_ORDER and the seed project's device switches
// into the spec.
func planHardware(s *qemu.Spec, c *config.Config) error {
	h := c.Hardware
	for _, d := range h.BootOrder {
		s.BootOrder = append(s.BootOrder, bootDevices[d])
	}
	if slices.Contains(h.BootOrder, config.BootNetwork) && len(c.NICs) == 0 {
		return &config.Error{Var: "BOOT_ORDER", Value: strings.Join(h.BootOrder, ","), Accepted: "network only together with a NIC (NETWORK_MODE is none)"}
	}
	s.Hardware = qemu.Hardware{NoRNG: !h.RNG, USB: h.USB, Balloon: h.Balloon, IOThread: h.IOThread, HyperV: h.HyperV}
	s.NetworkFirst = c.NetworkFirst()
	return nil
}

// shellWarning reminds that SHELL, which a login shell on the host also
// sets, becomes the guest user's shell and must exist in the image.
func shellWarning(c *config.Config) string {
	if c.Hardware.Shell == "" || !c.CloudInit {
		return ""
	}
	return fmt.Sprintf("SHELL=%s becomes %s's login shell in the guest: it must exist in the image (unset it for /bin/bash)", c.Hardware.Shell, c.GuestUser)
}

// checkCloudInit validates the user's user-data and network-config before
// anything is made: cloud-init would otherwise skip them in the guest.
func checkCloudInit(c *config.Config) error {
	var errs []error
	if c.UserDataPath != "" {
		if err := cloudinit.ValidateUserData(c.UserDataPath, c.UserData); err != nil {
			errs = append(errs, &config.Error{Var: "CLOUD_INIT_USER_DATA", Value: c.UserDataPath, Accepted: config.UserDataAccepted, Err: err})
		}
	}
	if c.NetworkConfigPath != "" {
		if err := cloudinit.ValidateNetworkConfig(c.NetworkConfigPath, c.NetworkConfig); err != nil {
			errs = append(errs, &config.Error{Var: "CLOUD_INIT_NETWORK_CONFIG", Value: c.NetworkConfigPath, Accepted: config.NetworkConfigAccepted, Err: err})
		}
	}
	return errors.Join(errs...)
}

// SeedFor is the cloud-init seed of c with the password and salt decided
// at start-up.
func SeedFor(c *config.Config, password, salt string) cloudinit.Seed {
	s := cloudinit.Seed{
		Hostname:      c.GuestName,
		User:          c.GuestUser,
		Shell:         c.Hardware.Shell,
		Password:      password,
		UserData:      c.UserData,
		NetworkConfig: c.NetworkConfig,
		Salt:          salt,
	}
	if c.SSHPubKey != "" {
		s.SSHKeys = []string{c.SSHPubKey}
	}
	return s
}

// planDisplay gives a VM with graphics std VGA (SeaBIOS' VGA BIOS and
// OVMF's QemuVideoDxe both drive it, as do installers of every OS), the
// TCP listener for GRAPHICS=vnc and the socket the web console bridges to.
// The socket is there with either, so a viewer can be added to a running VM.
// An aarch64 guest gets virtio-gpu, which AAVMF and Linux drive (std VGA
// needs a VGA BIOS), and a USB keyboard: the virt machine has no PS/2.
func planDisplay(con config.Console, vncPort int, paths Paths, arch config.Arch) *qemu.Display {
	if con.Graphics == config.GraphicsNone || con.Graphics == "" {
		return nil
	}
	d := &qemu.Display{Device: "VGA", Keymap: con.Keymap, VNCDisplay: -1, Socket: paths.VNCSocket}
	if arch == config.ArchAArch64 {
		d.Device, d.USBKeyboard = "virtio-gpu-pci", true
	}
	if vncPort != 0 {
		d.VNCHost, d.VNCDisplay, d.PasswordFile = con.VNCListen, vncPort-5900, paths.VNCPassword
	}
	return d
}
