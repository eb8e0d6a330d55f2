// Package config turns the environment into one typed, validated
// configuration. Nothing here starts processes or creates devices; the only
// side effects are reads (files named by variables, host facts passed in).
package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Accel is the requested accelerator; Auto is resolved at start-up.
type Accel string

const (
	AccelAuto Accel = "auto"
	AccelKVM  Accel = "kvm"
	AccelTCG  Accel = "tcg"
)

// BootMode selects the firmware.
type BootMode string

const (
	BootUEFI   BootMode = "uefi"
	BootLegacy BootMode = "legacy"
	BootSecure BootMode = "secure"
)

// NetMode is how one NIC reaches the outside.
type NetMode string

const (
	NetNAT    NetMode = "nat"
	NetBridge NetMode = "bridge"
	NetDirect NetMode = "direct"
	// NetContainer puts one of the container's own interfaces on a bridge
	// made inside the container, with the guest's tap: the guest takes
	// over that interface's network.
	NetContainer NetMode = "container"
	NetNone      NetMode = "none"
)

// DiskBus is how the guest's disks attach (DISK_TYPE).
type DiskBus string

const (
	BusVirtio DiskBus = "virtio"
	BusSCSI   DiskBus = "scsi"
	BusNVMe   DiskBus = "nvme"
	BusIDE    DiskBus = "ide"
	BusUSB    DiskBus = "usb" // usb-storage on the USB controller (qemu-xhci)
)

// ExtraDisk is DISKn_SIZE: a blank qcow2 disk of the VM besides its own.
type ExtraDisk struct {
	Index int   // n, 2 to MaxDisks
	Size  int64 // bytes
}

// Device is DEVICE (Index 1) or DEVICEn: a host block device or file the
// guest gets as a raw disk.
type Device struct {
	Index int
	Path  string // absolute
}

// Proto is a forwarded port's transport.
type Proto string

const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// PortFwd forwards HostPort on the host to GuestPort in the guest.
type PortFwd struct {
	Proto     Proto
	HostPort  int
	GuestPort int
}

// NIC is one guest network interface. Index is 1-based, as in NETWORKn_.
type NIC struct {
	Index     int
	Mode      NetMode
	Bridge    string           // bridge mode only
	DirectDev string           // direct mode only
	Model     string           // QEMU device name, e.g. virtio-net-pci
	MAC       net.HardwareAddr // nil: derive and persist
	MTU       int              // 0: detect (NIC 1) or leave alone
	// GuestIP and GuestIP6 are a nat NIC's guest address and prefix
	// (NETWORK_GUEST_IP, NETWORK_GUEST_IP6); invalid (the zero value):
	// QEMU's 10.0.2.15/24 and fec0::/64.
	GuestIP, GuestIP6 netip.Prefix
	Boot              bool // NETWORK_BOOT: the NIC the firmware boots from the network
	// ContainerIf is the container's interface a container mode NIC
	// takes over, ContainerBridge the bridge made for it.
	ContainerIf, ContainerBridge string
}

// Prefix is the environment prefix of this NIC's variables.
func (n NIC) Prefix() string { return nicPrefix(n.Index) }

// BootSource is what the VM's disk starts from: at most one of Path, URL,
// Distro and Blank is set; none means direct kernel boot without a disk.
// It is the user's intent only: the plan looks Distro up in the catalog
// and makes the download.
type BootSource struct {
	Path   string // local image
	URL    string // an http(s) image to download
	SHA256 string // BOOT_FROM_SHA256: the URL's pinned digest, 64 lower-case hex digits
	Distro string // DISTRO: a catalog name or alias
	Blank  bool
	Format string // BOOT_FROM_FORMAT: a qemu-img format name or iso; "": by content
}

// JSONCatalog is the seed project's JSON catalog (CATALOG_URL,
// CATALOG_CACHE, CATALOG_OFFLINE), as plain values: package image reads it.
type JSONCatalog struct {
	URL     string // https, or a local file; "" with Offline: the kept copy only
	Cache   string // where the fetched catalog is kept ("" when none is read)
	Offline bool
}

// Used tells whether a JSON catalog is read at all.
func (j JSONCatalog) Used() bool { return j.URL != "" || j.Offline }

// Downloads tells whether the boot image comes from the network.
func (b BootSource) Downloads() bool { return b.URL != "" || b.Distro != "" }

// Config is the whole validated configuration.
type Config struct {
	Boot          BootSource
	Catalog       string // CATALOG: a file or URL of more catalog entries
	JSONCatalog   JSONCatalog
	Kernel        string
	Initrd        string
	KernelCmdline string
	BootMode      BootMode

	// Arch is ARCH; "": the DISTRO entry's architecture, else the host's
	// (the plan decides).
	Arch Arch

	MemoryMiB       int
	CPUs            int
	CPUModel        string
	Machine         string // MACHINE; "": the architecture's (q35, virt)
	Accel           Accel
	RequireKVM      bool
	DiskSize        int64 // bytes; DISK_SIZE=max and half are resolved against DATA_DIR's free space
	DiskBus         DiskBus
	DiskCache       string // none, writeback, writethrough, directsync or unsafe
	DiskIO          string // native, threads or io_uring
	ExtraDisks      []ExtraDisk
	Devices         []Device
	Persist         *bool // nil: keep the state folder when DATA_DIR is a mount point
	GuestName       string
	DataDir         string
	ShutdownTimeout time.Duration
	KeepAlive       bool // KEEP_ALIVE_AFTER_VM_STOP; unset: on with Redfish or IPMI
	// MediaMaxSize and MediaMaxUnpacked cap a virtual medium's download
	// (DOWNLOAD_MAX_SIZE, EXTRACT_MAX_SIZE), as they cap BOOT_FROM's.
	MediaMaxSize, MediaMaxUnpacked int64
	PowerOnAtStart                 bool // POWER_ON_AT_START
	ExtraArgs                      []string
	QEMUBinary                     string // QEMU_BINARY; "": the architecture's (qemu-system-x86_64, qemu-system-aarch64)
	LogFormat                      string // "console", "json" or "" (decide by terminal)
	Verbose                        bool
	SerialLogMax                   int64  // bytes
	Sandbox                        bool   // QEMU's seccomp sandbox
	QEMUUser                       string // "": the default user, falling back to root; "root": no change

	NICs        []NIC // in index order; mode none NICs are dropped
	SSHPort     int
	PortFwds    []PortFwd
	PortFwdAddr string

	CloudInit     bool
	GuestUser     string
	GuestPassword string
	SSHPubKey     string
	UserDataPath  string
	UserData      []byte
	// NetworkConfigPath is CLOUD_INIT_NETWORK_CONFIG; NetworkConfig its
	// validated content, nil when not given.
	NetworkConfigPath string
	NetworkConfig     []byte

	VNCPort int // 0: no TCP VNC listener
	Console Console

	Hardware Hardware // the seed project's machine and console options
	Redfish  Redfish
	IPMI     IPMI

	Shares []Share // FILESYSTEM_*, FILESYSTEMn_* in index order

	IPXE IPXE
}

// IPXE is IPXE_ENABLE and IPXE_ROM_PATH: the boot NIC gets an iPXE option
// ROM named on the command line.
type IPXE struct {
	Enabled bool
	ROMPath string // "": Debian's ipxe-qemu ROM of the NIC's model, found at start-up
}

// Redfish is the BMC endpoint (REDFISH_*).
type Redfish struct {
	Enabled  bool
	Listen   string // host part of the listen address; "" is every address
	Port     int
	Username string
	Password string
	SystemID string
	// TLSCert and TLSKey are the user's PEM pair, both or neither; empty
	// means a self-signed pair kept in the state folder.
	TLSCert, TLSKey string
}

// Addr is the address the Redfish listener binds.
func (r Redfish) Addr() string {
	return net.JoinHostPort(r.Listen, strconv.Itoa(r.Port))
}

// CacheDir holds downloaded images, shared by every VM of DATA_DIR.
func (c *Config) CacheDir() string { return c.DataDir + "/cache" }

// StateDir is where this VM's files live.
func (c *Config) StateDir() string {
	return c.DataDir + "/vms/" + c.GuestName
}

// Error is a configuration error: exit status 2.
type Error struct {
	Var      string
	Value    string
	Accepted string
	Err      error // optional cause
}

// Error names the value with its secrets masked (see Redact): it is
// printed and logged.
func (e *Error) Error() string {
	msg := fmt.Sprintf("%s=%q: ", e.Var, RedactValue(e.Var, e.Value))
	if e.Err != nil {
		msg += Redact(e.Err.Error()) + "; "
	}
	return msg + "accepted: " + e.Accepted
}

func (e *Error) Unwrap() error { return e.Err }
