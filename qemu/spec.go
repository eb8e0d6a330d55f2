// Package qemu turns a resolved VM description into QEMU's command line
// (pure data, golden-tested) and talks QMP to the running QEMU.
package qemu

// Spec is everything the command line depends on, already resolved: paths
// exist or will, the accelerator is decided, fds are numbered.
type Spec struct {
	Name      string
	UUID      string // SMBIOS UUID; "": QEMU's default
	Machine   string
	Accel     string // "kvm" or "tcg"
	CPU       string
	MemoryMiB int
	CPUs      int
	Sandbox   bool // QEMU's seccomp filter (-sandbox)

	Firmware *Firmware // nil: SeaBIOS

	Kernel  string
	Initrd  string
	Cmdline string

	// DiskBase is Disk's base image (DiskBaseFormat: qcow2 or raw), which
	// QEMU opens with no backing of its own; empty: a blank disk.
	DiskBase       string
	DiskBaseFormat string

	Disk       string  // qcow2 overlay, booted after a CD; empty: no disk
	MoreDisks  []Drive // extra disks and host devices, after Disk
	DiskBus    string  // BusVirtio (also ""), BusSCSI, BusNVMe or BusIDE
	DiskCache  string  // cache= of every disk; "": QEMU's default
	DiskAIO    string  // aio= of every disk; "": QEMU's default
	CDROM      string  // the CD drive's medium (an installer ISO); empty: none
	CDDrive    bool    // a CD drive even without a medium, so one can be inserted live
	Boot       BootDevice
	Seed       string // cloud-init ISO; empty: none
	NICs       []NIC
	QMPSockets []string
	Display    *Display // nil: no graphics
	// GuestAgent is the unix socket QEMU listens on for the guest agent's
	// virtio-serial port (org.qemu.guest_agent.0); empty: no channel.
	GuestAgent string
	Shares     []Share // host folders, in order
	Extra      []string

	// BootOrder lists BootDisk, BootCD and BootNetwork (the boot NIC) in
	// the order the firmware tries them when Boot is BootDefault (BOOT_ORDER);
	// empty: the CD when it has a medium, then the disk.
	BootOrder []BootDevice
	// NetworkFirst puts the boot NIC before the default order or
	// BootOrder (NETWORK_BOOT or IPXE_ENABLE without BOOT_ORDER).
	NetworkFirst bool
	Hardware     Hardware
	TPM          *TPM // nil: no TPM
	GPU          *GPU // nil: no 3D; the display (if any) is std VGA
}

// TPM is a TPM 2.0 emulated by swtpm, which QEMU reaches on its control
// socket.
type TPM struct {
	Socket string
}

// GPU is a virtio GPU with virgl 3D, rendered through EGL on the host's
// render node, with or without a VNC display.
type GPU struct {
	RenderNode string
}

// Hardware is the optional devices; the zero value is the default set.
type Hardware struct {
	NoRNG    bool // no virtio-rng
	USB      bool // qemu-xhci with a USB tablet
	Balloon  bool // virtio-balloon
	IOThread bool // virtio-blk disks run in an iothread
	HyperV   bool // Hyper-V enlightenments on -cpu
}

// Share is a host folder the guest mounts by Tag.
type Share struct {
	ID       string // fsdev or chardev id: fs1, fs2, …
	Tag      string // mount tag in the guest
	Virtiofs bool   // vhost-user-fs through virtiofsd on Socket; else virtio-9p on Path
	Path     string // 9p: the host folder
	Socket   string // virtiofs: virtiofsd's vhost-user socket
	// SecurityModel is 9p's security_model: passthrough, mapped-xattr or none.
	SecurityModel string
	ReadOnly      bool // 9p: QEMU refuses writes
}

// BootDevice picks what the firmware boots first.
type BootDevice string

const (
	BootDefault BootDevice = ""        // BootOrder, or the CD when it has a medium, then the disk
	BootDisk    BootDevice = "disk"    // the disk only
	BootCD      BootDevice = "cd"      // the CD, then the disk
	BootNetwork BootDevice = "network" // PXE on the boot NIC (NIC.Boot), then the disk
)

// CDDevice is the qdev id of the CD drive, which QMP's medium commands name.
const CDDevice = "cd0dev"

// Display is the VM's screen and the VNC listeners that show it.
type Display struct {
	// Device is the display adapter, e.g. "VGA": std VGA has a VGA BIOS
	// for SeaBIOS and a driver in OVMF, and every guest OS drives it.
	Device string
	Keymap string // -k layout for VNC clients that send keysyms; "": QEMU's en-us
	// USBKeyboard adds a USB keyboard, for machines without a PS/2 one
	// (arm64's virt).
	USBKeyboard bool

	// VNCHost and VNCDisplay are the TCP listener (port 5900+VNCDisplay);
	// VNCDisplay < 0: none. Its password is read from PasswordFile by a
	// secret object, so it never stands on the command line.
	VNCHost      string
	VNCDisplay   int
	PasswordFile string

	// Socket is a second listener on a unix socket for the web console,
	// without VNC auth: its folder's permissions admit only vmrunner, and
	// the web console asks for its own password. "": none.
	Socket string
}

// VNC display ids, for QMP commands that address one of them.
const (
	VNCDisplayTCP    = "vnc0"
	VNCDisplaySocket = "web"
)

// Disk buses (DISK_TYPE).
const (
	BusVirtio = "virtio" // virtio-blk-pci
	BusSCSI   = "scsi"   // scsi-hd on the virtio-scsi controller the CDs use
	BusNVMe   = "nvme"   // one NVMe controller per disk
	BusIDE    = "ide"    // ide-hd on the machine's own AHCI (q35) or IDE (pc)
	BusUSB    = "usb"    // usb-storage on the USB controller (qemu-xhci)
)

// Drive is a disk other than the VM's own overlay.
type Drive struct {
	ID     string // -drive id, also the NVMe serial: disk2, dev1, …
	Path   string
	Format string // qcow2 or raw
}

// Firmware is a UEFI code/vars pair.
type Firmware struct {
	Code   string
	Vars   string // the VM's own writable copy
	Secure bool
}

// NIC is one guest network interface and its host backend.
type NIC struct {
	ID      string // netdev id, e.g. net0
	Model   string // QEMU device, e.g. virtio-net-pci
	MAC     string
	MTU     int // 0: leave the device default
	Backend Backend
	Boot    bool   // the NIC BootNetwork boots: NETWORK_BOOT's, else the first
	ROMFile string // option ROM (romfile=); "": QEMU's default for the model
	// ModernOnly makes a virtio NIC modern only (disable-legacy=on, PCI
	// id 1af4:1041): the id Debian's virtio ROMs carry. QEMU patches the
	// ids of its default ROM to the device's, but not those of a ROM
	// named by romfile=, and SeaBIOS runs a ROM only on its own device.
	ModernOnly bool
}

// Backend is a -netdev: UserNet or TapNet.
type Backend interface {
	netdev(id string) string
}

// UserNet is QEMU user-mode networking (slirp) with port forwards.
type UserNet struct {
	IPv6     bool
	Forwards []Forward
	// Net (an IPv4 prefix), Host, DHCPStart and DNS replace QEMU's
	// 10.0.2.0/24, .2, .15 and .3; IPv6Net, IPv6Host and IPv6DNS its
	// fec0::/64, ::2 and ::3. "": QEMU's default. The forwards go to
	// DHCPStart, the guest's address.
	Net, Host, DHCPStart, DNS  string
	IPv6Net, IPv6Host, IPv6DNS string
}

// Forward is one hostfwd rule.
type Forward struct {
	Proto     string // tcp or udp
	HostAddr  string
	HostPort  int
	GuestPort int
}

// TapNet is a tap or macvtap the supervisor opened and passes to QEMU as an
// inherited file descriptor (or, with FD < 0, by interface name).
type TapNet struct {
	FD      int    // fd number in QEMU; -1 to use Ifname
	Ifname  string // used when FD < 0
	VhostFD int    // -1: no vhost-net
}
