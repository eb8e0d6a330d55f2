package config

// The raw structs mirror the contract's environment variables one field each.
// They hold strings so that every value is checked by this package, which can
// then say which variable was wrong, what it held and what is accepted; the
// struct tags are also the single source for --help.

type rawMachine struct {
	BootFrom      string `env:"BOOT_FROM" help:"disk image to boot: a local path (qcow2, raw, vmdk, vhdx, vdi; an .iso boots as an installer CD with a blank disk; compressed with xz, gzip, zstd or bzip2, or one disk image in a zip, 7z, tar or OVA archive, unpacked into DATA_DIR/cache), an http(s) URL (downloaded once into DATA_DIR/cache), or 'blank'"`
	BootFromSHA   string `env:"BOOT_FROM_SHA256" help:"sha256 the BOOT_FROM download must have (64 hex digits); required for an http:// (not https) BOOT_FROM"`
	BootFromFmt   string `env:"BOOT_FROM_FORMAT" help:"BOOT_FROM's format, instead of telling it from the content: raw, qcow2, vmdk, vhdx, vpc, vdi or iso (a header of another format is refused; a raw image is never parsed)"`
	DownloadMax   string `env:"DOWNLOAD_MAX_SIZE" envDefault:"64G" help:"most bytes an image download may write into DATA_DIR/cache"`
	ExtractMax    string `env:"EXTRACT_MAX_SIZE" envDefault:"512G" help:"most bytes unpacking a compressed image or an archive (local or downloaded) may write"`
	Distro        string `env:"DISTRO" envDefault:"ubuntu-2404" help:"catalog entry used when BOOT_FROM is unset (vmrunner --list-distros); with KERNEL only when set explicitly"`
	Catalog       string `env:"CATALOG" help:"a catalog file whose entries are added to, or replace, the built-in ones"`
	CatalogURL    string `env:"CATALOG_URL" help:"a JSON catalog in the seed project's format (https, or a local file) whose entries are added to, or replace, the built-in ones; CATALOG's entries win over it"`
	CatalogCache  string `env:"CATALOG_CACHE" help:"where the fetched JSON catalog is kept, and read from when the fetch fails (default DATA_DIR/cache/catalog.json)"`
	CatalogOff    string `env:"CATALOG_OFFLINE" envDefault:"0" help:"1: read the JSON catalog from CATALOG_CACHE only, fetching nothing"`
	Kernel        string `env:"KERNEL" help:"kernel for direct kernel boot (-kernel)"`
	Initrd        string `env:"INITRD" help:"initrd for direct kernel boot (-initrd)"`
	KernelCmdline string `env:"KERNEL_CMDLINE" help:"kernel command line for direct kernel boot (-append)"`
	BootMode      string `env:"BOOT_MODE" envDefault:"uefi" help:"firmware: uefi, legacy (SeaBIOS) or secure (UEFI Secure Boot)"`

	Memory          string `env:"MEMORY" envDefault:"4096" help:"guest memory: MiB, a size such as 2G, max (what the container may use less 512 MiB for QEMU) or half of it"`
	CPUs            string `env:"CPUS" envDefault:"2" help:"vCPUs, or max/half of the CPUs the container may use"`
	CPUModel        string `env:"CPU_MODEL" envDefault:"host" help:"-cpu model under KVM; under TCG 'host' becomes 'max'"`
	Arch            string `env:"ARCH" help:"guest architecture: x86_64 (or amd64) or aarch64 (or arm64: the virt machine with AAVMF firmware, under TCG on an x86_64 host; KVM only on an arm64 host) (default: the DISTRO entry's, else the host's)"`
	Machine         string `env:"MACHINE" envDefault:"q35" help:"-machine type (virt for an aarch64 guest)"`
	Accel           string `env:"ACCEL" envDefault:"auto" help:"auto (KVM when it runs a test guest within 100 ms, else TCG with a warning saying why), kvm or tcg"`
	RequireKVM      string `env:"REQUIRE_KVM" envDefault:"0" help:"1: refuse to start without KVM"`
	DiskSize        string `env:"DISK_SIZE" envDefault:"20G" help:"size of the VM's writable disk (grows, never shrinks), e.g. 20G; max: 90 % of the space free in DATA_DIR, half: half of it"`
	DiskType        string `env:"DISK_TYPE" envDefault:"virtio" help:"how every disk attaches: virtio (virtio-blk), scsi (virtio-scsi), nvme, ide (6 disks on q35, 4 on pc), or usb (usb-storage; adds the USB controller)"`
	DiskCache       string `env:"DISK_CACHE" envDefault:"none" help:"host page cache for the disks: none (O_DIRECT; writeback where the state folder's filesystem refuses O_DIRECT), writeback, writethrough, directsync (O_DIRECT and a sync per write; writethrough where refused) or unsafe"`
	DiskIO          string `env:"DISK_IO" help:"disk I/O: native (the default with DISK_CACHE=none or directsync, which it needs), threads (the default otherwise) or io_uring"`
	Device          string `env:"DEVICE" help:"a host block device (or image file) given to the guest as a raw disk after the others; DEVICE2 to DEVICE6 add more"`
	Persist         string `env:"PERSIST" help:"1: keep the state folder (disks, UEFI variables) when the VM ends; 0: remove it (default: 1 when DATA_DIR is a mount point, such as a volume, else 0)"`
	Hostname        string `env:"HOSTNAME" help:"the VM's name when GUEST_NAME is unset (Docker sets it to the container's hostname; default: the machine's hostname)"`
	GuestName       string `env:"GUEST_NAME" help:"VM name and state folder name (default: $HOSTNAME or the hostname, else the DISTRO name, else 'vm')"`
	DataDir         string `env:"DATA_DIR" help:"state root; the VM lives in DATA_DIR/vms/GUEST_NAME (default: $XDG_STATE_HOME/vmrunner or ~/.local/state/vmrunner)"`
	ShutdownTimeout string `env:"SHUTDOWN_TIMEOUT" envDefault:"30" help:"seconds the guest gets to power off after a stop signal"`
	KeepAlive       string `env:"KEEP_ALIVE_AFTER_VM_STOP" help:"1: when the guest powers off or QEMU ends, vmrunner stays up with the VM off (vmrunner start powers it on again from the same state folder); SIGTERM then stops the VM and vmrunner (default: 0, but 1 with REDFISH_ENABLE=1 or IPMI_ENABLE=1: powering the VM off must not end its BMC)"`
	PowerOnAtStart  string `env:"POWER_ON_AT_START" envDefault:"1" help:"0: do not power the VM on when vmrunner starts; it waits, off, for vmrunner start (or a BMC)"`
	ExtraArgs       string `env:"EXTRA_ARGS" help:"extra QEMU arguments, shell-quoted, appended last"`
	LogFormat       string `env:"LOG_FORMAT" help:"supervisor log format: console or json (default: console on a terminal, else json)"`
	QEMUBinary      string `env:"QEMU_BINARY" envDefault:"qemu-system-x86_64" help:"QEMU program to run, a name on PATH or a path (qemu-system-aarch64 for an aarch64 guest)"`
	LogVerbose      string `env:"LOG_VERBOSE" envDefault:"0" help:"1: debug logging"`
	Sandbox         string `env:"SANDBOX" envDefault:"1" help:"0: run QEMU without its seccomp sandbox (-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny), for debugging only"`
	QEMUUser        string `env:"QEMU_USER" help:"user QEMU runs as when vmrunner runs as root: a name or uid[:gid], or root to keep QEMU root (default: vmrunner-qemu if it exists, else nobody; root with a warning when that user cannot reach a file QEMU needs)"`
	SerialLogMax    string `env:"SERIAL_LOG_MAX" envDefault:"10M" help:"size at which serial.log is rotated to serial.log.1 (one old file kept), e.g. 10M"`

	SSHPort     string `env:"SSH_PORT" envDefault:"2222" help:"host-side port forwarded to guest port 22 on the first nat NIC; 0: no SSH forward"`
	PortFwd     string `env:"PORT_FWD" help:"more forwards on the first nat NIC: host:guest[/tcp|/udp], comma separated, e.g. 8080:80,5353:53/udp"`
	PortFwdAddr string `env:"PORT_FWD_ADDR" envDefault:"0.0.0.0" help:"host address the nat forwards listen on (127.0.0.1 keeps them local)"`

	CloudInit     string `env:"CLOUD_INIT" envDefault:"1" help:"0: attach no cloud-init seed"`
	GuestUser     string `env:"GUEST_USER" envDefault:"user" help:"login user created in the guest"`
	GuestPassword string `env:"GUEST_PASSWORD" help:"its password (stored hashed in the seed); unset with SSH_PUBKEY: password login off and the password locked; unset without: a random one, kept in the state folder's guest-password and logged once"`
	SSHPubKey     string `env:"SSH_PUBKEY" help:"an authorized public key for GUEST_USER"`
	UserDataPath  string `env:"CLOUD_INIT_USER_DATA" help:"path to your own user-data; the built-in user setup then moves to vendor-data"`
	NetConfigPath string `env:"CLOUD_INIT_NETWORK_CONFIG" help:"path to a cloud-init network-config (version 1 or 2 YAML) for the seed, e.g. a static address"`
	Graphics      string `env:"GRAPHICS" envDefault:"none" help:"none (serial console only), vnc (a VNC port with a password) or novnc (the screen in a browser: HTTPS on NOVNC_PORT, no VNC port)"`
	VNCPort       string `env:"VNC_PORT" envDefault:"5900" help:"VNC listen port when GRAPHICS=vnc (5900 or above)"`
	VNCListen     string `env:"VNC_LISTEN" envDefault:"0.0.0.0" help:"address the VNC port listens on (0.0.0.0 suits docker run -p; 127.0.0.1 keeps it local)"`
	VNCKeymap     string `env:"VNC_KEYMAP" help:"keyboard layout for VNC clients that send symbols rather than key codes, e.g. de, fr, en-gb (default: en-us); noVNC sends key codes and needs none"`
	VNCPassword   string `env:"VNC_PASSWORD" help:"VNC password, at most 8 characters (VNC authentication uses only 8); unset: generated once, kept in the state folder (vnc-password) and logged when made"`
	NoVNCPort     string `env:"NOVNC_PORT" envDefault:"6080" help:"HTTPS port of the web console when GRAPHICS=novnc"`
	NoVNCUser     string `env:"NOVNC_USERNAME" envDefault:"user" help:"web console user (HTTP basic auth)"`
	NoVNCPassword string `env:"NOVNC_PASSWORD" help:"web console password (default: the VNC password)"`
	NoVNCDir      string `env:"NOVNC_DIR" envDefault:"/usr/share/novnc" help:"folder of the noVNC web client (Debian package novnc)"`
	NoVNCCert     string `env:"NOVNC_TLS_CERT" help:"PEM certificate of the web console; unset: the self-signed one in the state folder (shared with Redfish)"`
	NoVNCKey      string `env:"NOVNC_TLS_KEY" help:"PEM key for NOVNC_TLS_CERT"`
	RedfishEnable string `env:"REDFISH_ENABLE" envDefault:"0" help:"1: serve a Redfish BMC (HTTPS) that powers, resets and boots the VM and inserts virtual media, for Ironic, Metal3 or redfishtool"`
	RedfishPort   string `env:"REDFISH_PORT" envDefault:"8443" help:"Redfish HTTPS port"`
	RedfishListen string `env:"REDFISH_LISTEN" help:"address Redfish listens on, e.g. 127.0.0.1 (default: every address, as docker -p needs)"`
	RedfishUser   string `env:"REDFISH_USERNAME" envDefault:"admin" help:"Redfish user name"`
	RedfishPasswd string `env:"REDFISH_PASSWORD" help:"Redfish password, at least 8 characters; required with REDFISH_ENABLE=1 (the seed project's default 'password' is refused)"`
	RedfishID     string `env:"REDFISH_SYSTEM_ID" help:"the system's id in /redfish/v1/Systems/ID (default: GUEST_NAME)"`
	RedfishCert   string `env:"REDFISH_TLS_CERT" help:"PEM certificate (chain) for Redfish HTTPS, with REDFISH_TLS_KEY (default: a self-signed one made once and kept in the state folder)"`
	RedfishKey    string `env:"REDFISH_TLS_KEY" help:"PEM private key of REDFISH_TLS_CERT"`
}

// rawNIC is read once per NIC with the prefix NETWORK_ (NIC 1) or NETWORKn_.
type rawNIC struct {
	Mode      string `env:"MODE" envDefault:"nat" help:"nat, bridge, direct, container or none"`
	Bridge    string `env:"BRIDGE" envDefault:"br0" help:"existing host bridge for bridge mode"`
	DirectDev string `env:"DIRECT_DEV" envDefault:"eth0" help:"parent host NIC for direct (macvtap) mode"`
	Model     string `env:"MODEL" envDefault:"virtio" help:"virtio, e1000, e1000e, rtl8139, vmxnet3, pcnet or ne2k_pci"`
	MAC       string `env:"MAC" help:"unicast MAC (default: derived from GUEST_NAME and the NIC index, kept in mac-N)"`
	MTU       string `env:"MTU" help:"MTU 68-65535 (default for NIC 1: the host default route's MTU when not 1500)"`
	GuestIP   string `env:"GUEST_IP" help:"nat: the guest's IPv4 address, ADDRESS (a /24) or ADDRESS/PREFIX (8-29); its subnet becomes the NAT network, the host side .2 and DNS .3 of it (default: 10.0.2.15 in 10.0.2.0/24)"`
	GuestIP6  string `env:"GUEST_IP6" help:"nat: an IPv6 ADDRESS[/64] whose /64 becomes the NAT's IPv6 prefix, host side ::2, DNS ::3; the guest takes its address there by SLAAC (default: fec0::/64)"`
	Boot      string `env:"BOOT" envDefault:"0" help:"1: this NIC is the network boot device (one NIC at most): first in the boot order, or where BOOT_ORDER says network"`
	ContIf    string `env:"CONTAINER_INTERFACE" help:"container mode: the container's interface (e.g. eth1, a Docker or Multus second network) that vmrunner puts on a bridge with the guest; required"`
	ContBr    string `env:"CONTAINER_BRIDGE" help:"container mode: name of the bridge vmrunner makes inside the container (default: vmbrN, N the NIC's index)"`
}

// rawDisk holds the numbered disk variables, read once for each n from 2
// to MaxDisks: a lower-case n in a tag stands for the number, and --help
// shows the tag as it is.
type rawDisk struct {
	Size   string `env:"DISKn_SIZE" help:"size of extra disk n: a blank diskn.qcow2 in the state folder (grows, never shrinks)"`
	Device string `env:"DEVICEn" help:"host block device (or image file) n, given to the guest as a raw disk"`
}

// rawShare is read once per shared folder with the prefix FILESYSTEM_
// (share 1) or FILESYSTEMn_.
type rawShare struct {
	Source     string `env:"SOURCE" help:"host folder shared with the guest (the share exists only when this is set)"`
	Target     string `env:"TARGET" help:"where the guest mounts it (default: /mnt/share, /mnt/shareN for share N)"`
	Driver     string `env:"DRIVER" help:"virtiofs (the default; falls back to 9p with a warning where virtiofsd cannot serve the share) or 9p; given explicitly, no fallback"`
	AccessMode string `env:"ACCESSMODE" help:"passthrough (the default: owners and modes as the guest sets them), mapped (kept in xattrs, 9p only) or squash (owner changes ignored, 9p only)"`
	ReadOnly   string `env:"READONLY" envDefault:"0" help:"1: the guest cannot write (enforced on the host: QEMU for 9p, a read-only mount for virtiofsd)"`
}
