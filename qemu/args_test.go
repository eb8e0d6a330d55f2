package qemu

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// base is a small spec each scenario changes.
func base() Spec {
	return Spec{
		Name:       "vm",
		Machine:    "q35",
		Accel:      "kvm",
		CPU:        "host",
		MemoryMiB:  2048,
		CPUs:       2,
		Sandbox:    true,
		QMPSockets: []string{"/data/vms/vm/qmp.sock", "/data/vms/vm/qmp-probe.sock"},
	}
}

// display is a console with both listeners, as GRAPHICS=novnc with
// VNC_PORT gives it.
func display() *Display {
	return &Display{Device: "VGA", VNCHost: "0.0.0.0", VNCDisplay: 1,
		PasswordFile: "/data/vms/vm/vnc-password", Socket: "/data/vms/vm/console/vnc.sock"}
}

func natNIC(id, mac string, u UserNet) NIC {
	return NIC{ID: id, Model: "virtio-net-pci", MAC: mac, Backend: u}
}

var scenarios = []struct {
	name string
	spec func() Spec
}{
	{"sandbox_off", func() Spec {
		s := base()
		s.Sandbox = false
		return s
	}},
	{"minimal_legacy_kernel", func() Spec {
		s := base()
		s.Accel, s.CPU = "tcg", "max"
		s.MemoryMiB, s.CPUs = 256, 1
		s.Kernel = "/boot/vmlinuz"
		s.Initrd = "/boot/initrd.img"
		s.Cmdline = "console=ttyS0 panic=-1"
		s.QMPSockets = nil
		return s
	}},
	// An arm64 guest under TCG: the virt machine with AAVMF, a cloud
	// image, and a screen (virtio-gpu with a USB keyboard).
	{"aarch64_uefi_disk_vnc", func() Spec {
		s := base()
		s.Machine, s.Accel, s.CPU = "virt,gic-version=max", "tcg", "max"
		s.Firmware = &Firmware{Code: "/usr/share/AAVMF/AAVMF_CODE.fd", Vars: "/data/vms/vm/efivars.fd"}
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.DiskBase, s.DiskBaseFormat = "/data/cache/debian-12-genericcloud-arm64.qcow2", "qcow2"
		s.Seed = "/data/vms/vm/seed.iso"
		s.NICs = []NIC{natNIC("net1", "52:54:00:12:34:56", UserNet{Forwards: []Forward{{"tcp", "0.0.0.0", 2222, 22}}})}
		s.Display = display()
		s.Display.Device, s.Display.USBKeyboard = "virtio-gpu-pci", true
		return s
	}},
	// The arm64 test guest's kernel straight on virt, no firmware: a
	// device tree instead of ACPI.
	{"aarch64_kernel_no_firmware", func() Spec {
		s := base()
		s.Machine, s.Accel, s.CPU = "virt,gic-version=max", "tcg", "max"
		s.MemoryMiB = 512
		s.Kernel, s.Initrd, s.Cmdline = "/guest/vmlinuz", "/guest/initrd.gz", "console=ttyAMA0"
		s.NICs = []NIC{natNIC("net1", "52:54:00:12:34:56", UserNet{Forwards: []Forward{{"tcp", "127.0.0.1", 8080, 80}}})}
		return s
	}},
	{"kernel_without_initrd_or_cmdline", func() Spec {
		s := base()
		s.Kernel = "/boot/vmlinuz"
		return s
	}},
	{"uefi_disk_seed", func() Spec {
		s := base()
		s.Firmware = &Firmware{Code: "/usr/share/OVMF/OVMF_CODE_4M.fd", Vars: "/data/vms/vm/efivars.fd"}
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.DiskBase, s.DiskBaseFormat = "/data/cache/debian-12.qcow2", "qcow2"
		s.Seed = "/data/vms/vm/seed.iso"
		s.NICs = []NIC{natNIC("net1", "52:54:00:12:34:56", UserNet{Forwards: []Forward{{"tcp", "0.0.0.0", 2222, 22}}})}
		return s
	}},
	{"secure_boot", func() Spec {
		s := base()
		s.Firmware = &Firmware{Code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", Vars: "/data/vms/vm/efivars.fd", Secure: true}
		s.Disk = "/data/vms/vm/disk.qcow2"
		return s
	}},
	{"nat_forwards_ipv6_on", func() Spec {
		s := base()
		s.NICs = []NIC{natNIC("net1", "52:54:00:12:34:56", UserNet{IPv6: true, Forwards: []Forward{
			{"tcp", "0.0.0.0", 2222, 22},
			{"tcp", "0.0.0.0", 8080, 80},
			{"udp", "0.0.0.0", 5353, 53},
		}})}
		return s
	}},
	{"nat_forwards_ipv6_off_local", func() Spec {
		s := base()
		s.NICs = []NIC{natNIC("net1", "52:54:00:12:34:56", UserNet{IPv6: false, Forwards: []Forward{
			{"tcp", "127.0.0.1", 2222, 22},
			{"udp", "127.0.0.1", 5353, 53},
		}})}
		return s
	}},
	{"nat_no_forwards", func() Spec {
		s := base()
		s.NICs = []NIC{natNIC("net2", "52:54:00:00:00:02", UserNet{IPv6: true})}
		return s
	}},
	{"mtu_virtio", func() Spec {
		s := base()
		n := natNIC("net1", "52:54:00:12:34:56", UserNet{})
		n.MTU = 1400
		s.NICs = []NIC{n}
		return s
	}},
	{"mtu_e1000", func() Spec {
		s := base()
		n := natNIC("net1", "52:54:00:12:34:56", UserNet{})
		n.Model, n.MTU = "e1000", 1400
		s.NICs = []NIC{n}
		return s
	}},
	{"tap_fd_vhost", func() Spec {
		s := base()
		s.NICs = []NIC{{ID: "net1", Model: "virtio-net-pci", MAC: "52:54:00:12:34:56", MTU: 9000, Backend: TapNet{FD: 3, VhostFD: 4}}}
		return s
	}},
	{"tap_fd_no_vhost", func() Spec {
		s := base()
		s.NICs = []NIC{{ID: "net1", Model: "e1000e", MAC: "52:54:00:12:34:56", Backend: TapNet{FD: 3, VhostFD: -1}}}
		return s
	}},
	{"tap_ifname", func() Spec {
		s := base()
		s.NICs = []NIC{{ID: "net1", Model: "virtio-net-pci", MAC: "52:54:00:12:34:56", Backend: TapNet{FD: -1, Ifname: "vmt525400123456", VhostFD: -1}}}
		return s
	}},
	{"mixed_nics", func() Spec {
		s := base()
		s.NICs = []NIC{
			natNIC("net1", "52:54:00:00:00:01", UserNet{IPv6: true, Forwards: []Forward{{"tcp", "0.0.0.0", 2222, 22}}}),
			{ID: "net2", Model: "virtio-net-pci", MAC: "52:54:00:00:00:02", Backend: TapNet{FD: 3, VhostFD: 4}},
			{ID: "net3", Model: "virtio-net-pci", MAC: "52:54:00:00:00:03", Backend: TapNet{FD: 5, VhostFD: 6}},
			natNIC("net4", "52:54:00:00:00:04", UserNet{IPv6: true}),
		}
		return s
	}},
	{"vnc", func() Spec {
		s := base()
		s.Display = display()
		s.Display.Socket = ""
		return s
	}},
	{"vnc_display_0_ipv6_keymap", func() Spec {
		s := base()
		s.Display = display()
		s.Display.VNCHost, s.Display.VNCDisplay, s.Display.Keymap = "::", 0, "de"
		return s
	}},
	{"novnc_socket_only", func() Spec {
		s := base()
		s.Display = display()
		s.Display.VNCDisplay = -1
		return s
	}},
	{"vnc_and_socket_comma_paths", func() Spec {
		s := base()
		s.Display = display()
		s.Display.PasswordFile, s.Display.Socket = "/data,x/vnc-password", "/data,x/console/vnc.sock"
		return s
	}},
	{"extra_args_last", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.Display = display()
		s.Extra = []string{"-device", "virtio-balloon-pci", "-no-reboot"}
		return s
	}},
	{"disks_virtio_cache_none", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.DiskBase, s.DiskBaseFormat = "/images/base.qcow2", "qcow2"
		s.MoreDisks = moreDisks()
		s.DiskCache, s.DiskAIO = "none", "native"
		return s
	}},
	{"disks_scsi_share_the_cd_controller", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.MoreDisks = moreDisks()
		s.DiskBus, s.DiskCache, s.DiskAIO = BusSCSI, "writeback", "threads"
		s.CDROM = "/iso/installer.iso"
		s.Seed = "/data/vms/vm/seed.iso"
		return s
	}},
	{"disks_scsi_without_cds", func() Spec {
		s := base()
		s.MoreDisks = moreDisks()[:1]
		s.DiskBus = BusSCSI
		return s
	}},
	{"disks_nvme", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.DiskBase, s.DiskBaseFormat = "/images/base.raw", "raw"
		s.MoreDisks = moreDisks()
		s.DiskBus, s.DiskCache, s.DiskAIO = BusNVMe, "unsafe", "io_uring"
		return s
	}},
	{"disks_ide_q35", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.MoreDisks = moreDisks()
		s.DiskBus = BusIDE
		s.Seed = "/data/vms/vm/seed.iso"
		return s
	}},
	{"disks_ide_pc", func() Spec {
		s := base()
		s.Machine = "pc-i440fx-7.2"
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.MoreDisks = moreDisks()
		s.DiskBus = BusIDE
		return s
	}},
	{"run_empty_cd_drive_uuid", func() Spec {
		s := base()
		s.UUID = "0b4d2f6e-8c1a-4e3b-9f7d-2a6c5e8b1d40"
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.Seed = "/data/vms/vm/seed.iso"
		s.CDDrive = true
		return s
	}},
	{"boot_cd_with_medium", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.CDDrive, s.CDROM, s.Boot = true, "/data/cache/rescue.iso", BootCD
		return s
	}},
	{"boot_disk_before_installer", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.CDDrive, s.CDROM, s.Boot = true, "/iso/installer.iso", BootDisk
		return s
	}},
	{"boot_network", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.CDDrive, s.Boot = true, BootNetwork
		s.NICs = []NIC{natNIC("net1", "52:54:00:12:34:56", UserNet{}), natNIC("net2", "52:54:00:12:34:57", UserNet{})}
		s.NICs[0].Boot = true
		return s
	}},
	{"nat_guest_ip", func() Spec {
		// NETWORK_GUEST_IP=192.168.77.15, NETWORK_GUEST_IP6=fd00:77::15:
		// the forwards go to the guest's address.
		s := base()
		s.Kernel = "/boot/vmlinuz"
		s.NICs = []NIC{natNIC("net1", "52:54:00:12:34:56", UserNet{IPv6: true, Forwards: []Forward{{"tcp", "127.0.0.1", 2222, 22}, {"udp", "127.0.0.1", 5353, 53}},
			Net: "192.168.77.0/24", Host: "192.168.77.2", DHCPStart: "192.168.77.15", DNS: "192.168.77.3",
			IPv6Net: "fd00:77::/64", IPv6Host: "fd00:77::2", IPv6DNS: "fd00:77::3"})}
		return s
	}},
	{"network_boot_first", func() Spec {
		// NETWORK2_BOOT=1 and IPXE_ENABLE=1 without BOOT_ORDER: NIC 2
		// with its iPXE ROM boots first, then the installer CD, the disk.
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.CDROM = "/data/install.iso"
		s.NetworkFirst = true
		s.NICs = []NIC{natNIC("net1", "52:54:00:12:34:56", UserNet{}), natNIC("net2", "52:54:00:12:34:57", UserNet{})}
		s.NICs[1].Boot, s.NICs[1].ROMFile, s.NICs[1].ModernOnly = true, "/usr/lib/ipxe/qemu/efi-virtio,1.rom", true
		return s
	}},
	{"network_first_installed", func() Spec {
		// NETWORK_BOOT=1 on an installed VM: the NIC, the disk, then the CD.
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.CDROM = "/data/install.iso"
		s.NetworkFirst = true
		s.BootOrder = []BootDevice{BootDisk, BootCD}
		s.NICs = []NIC{natNIC("net1", "52:54:00:12:34:56", UserNet{})}
		s.NICs[0].Boot = true
		return s
	}},
	{"comma_in_paths", func() Spec {
		s := base()
		s.Firmware = &Firmware{Code: "/fw,dir/OVMF_CODE.fd", Vars: "/data,1/vms/vm/efivars.fd"}
		s.Disk = "/data,1/vms/vm/disk.qcow2"
		s.DiskBase, s.DiskBaseFormat = "/images,1/\"base\".qcow2", "qcow2"
		s.Seed = "/data,1/vms/vm/seed,,x.iso"
		s.GuestAgent = "/data,1/vms/vm/qga.sock"
		return s
	}},
	{"shares_9p_and_virtiofs", func() Spec {
		s := base()
		s.Shares = []Share{
			{ID: "fs1", Tag: "share1", Path: "/srv/data,1", SecurityModel: "mapped-xattr", ReadOnly: true},
			{ID: "fs2", Tag: "share2", Virtiofs: true, Socket: "/data/vms/vm/virtiofs-2.sock"},
			{ID: "fs3", Tag: "share3", Path: "/srv/other", SecurityModel: "passthrough"},
			{ID: "fs4", Tag: "share4", Virtiofs: true, Socket: "/data/vms/vm/virtiofs-4.sock"},
		}
		return s
	}},
	{"guest_agent", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.GuestAgent = "/data/vms/vm/qga.sock"
		return s
	}},
	{"seed_hardware", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.MoreDisks = moreDisks()
		s.CDROM = "/data/install.iso"
		s.NICs = []NIC{natNIC("net1", "52:54:00:12:34:56", UserNet{})}
		s.NICs[0].Boot = true
		s.BootOrder = []BootDevice{BootNetwork, BootCD, BootDisk}
		s.Hardware = Hardware{NoRNG: true, USB: true, Balloon: true, IOThread: true, HyperV: true}
		return s
	}},
	{"tpm", func() Spec {
		s := base()
		s.TPM = &TPM{Socket: "/data/vms/vm,1/tpm.sock"}
		return s
	}},
	{"gpu_headless", func() Spec {
		s := base()
		s.GPU = &GPU{RenderNode: "/dev/dri/renderD128"}
		return s
	}},
	{"gpu_vnc", func() Spec {
		s := base()
		s.GPU = &GPU{RenderNode: "/dev/dri/by-path/pci-0000:00:02.0,render"}
		s.Display = display()
		return s
	}},
	// The disks bring the USB controller; the display and USB=1 add only
	// their tablet, once.
	{"disks_usb_display_usb", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.MoreDisks = moreDisks()
		s.DiskBus = BusUSB
		s.Display = display()
		s.Hardware.USB = true
		return s
	}},
	{"disks_usb", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.DiskBus = BusUSB
		return s
	}},
	{"boot_order_hd_only", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.CDROM = "/data/install.iso"
		s.NICs = []NIC{natNIC("net1", "52:54:00:12:34:56", UserNet{})}
		s.BootOrder = []BootDevice{BootDisk}
		return s
	}},
	{"boot_override_over_boot_order", func() Spec {
		// `vmrunner boot cd` wins over BOOT_ORDER=network,hd for its start.
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.CDDrive, s.CDROM, s.Boot = true, "/data/cache/rescue.iso", BootCD
		s.NICs = []NIC{natNIC("net1", "52:54:00:12:34:56", UserNet{})}
		s.BootOrder = []BootDevice{BootNetwork, BootDisk}
		return s
	}},
	{"iothread_on_scsi_disks", func() Spec {
		s := base()
		s.Disk = "/data/vms/vm/disk.qcow2"
		s.DiskBus = BusSCSI
		s.Hardware.IOThread = true
		return s
	}},
}

// moreDisks is an extra blank disk and a host device, as MakePlan names them.
func moreDisks() []Drive {
	return []Drive{
		{ID: "disk2", Path: "/data/vms/vm/disk2.qcow2", Format: "qcow2"},
		{ID: "dev1", Path: "/dev/sdb", Format: "raw"},
	}
}

func TestIDESlots(t *testing.T) {
	for machine, want := range map[string]int{"q35": 6, "pc-q35-7.2": 6, "q35,smm=on": 6, "pc": 4, "pc-i440fx-7.2": 4} {
		if got := IDESlots(machine); got != want {
			t.Errorf("IDESlots(%q) = %d, want %d", machine, got, want)
		}
	}
}

func goldenPath(name string) string { return filepath.Join("testdata", name+".golden") }

// TestArgsGolden pins the complete command line of each scenario; run
// go test ./qemu/ -update to rewrite testdata/*.golden after a change.
func TestArgsGolden(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			args := Args(sc.spec())
			for _, a := range args {
				if strings.Contains(a, "\n") {
					t.Fatalf("argument %q has a newline; golden files hold one argument per line", a)
				}
			}
			got := strings.Join(args, "\n") + "\n"
			path := goldenPath(sc.name)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./qemu/ -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Args differ from %s (go test ./qemu/ -update rewrites it):\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

// TestGoldenFilesHaveScenarios catches a golden file left behind.
func TestGoldenFilesHaveScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, sc := range scenarios {
		names[goldenPath(sc.name)] = true
	}
	for _, f := range files {
		if !names[f] {
			t.Errorf("%s has no scenario", f)
		}
	}
}

// lineDiff is a small line diff: lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  - " + wl + "\n  + " + gl + "\n")
		}
	}
	return b.String()
}

// option returns the values of every occurrence of opt in args.
func option(args []string, opt string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == opt {
			out = append(out, args[i+1])
		}
	}
	return out
}

func TestArgsProperties(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			s := sc.spec()
			args := Args(s)
			if !slices.Equal(args[:2], []string{"-name", "guest=" + s.Name}) {
				t.Errorf("args do not start with -name: %q", args[:2])
			}
			if len(s.Extra) > 0 && !slices.Equal(args[len(args)-len(s.Extra):], s.Extra) {
				t.Errorf("EXTRA_ARGS are not last: %q", args)
			}
			machine := option(args, "-machine")
			secure := s.Firmware != nil && s.Firmware.Secure
			if len(machine) != 1 || strings.HasSuffix(machine[0], ",smm=on") != secure {
				t.Errorf("-machine %q with secure boot %v", machine, secure)
			}
			hasGlobal := slices.Contains(option(args, "-global"), "driver=cfi.pflash01,property=secure,value=on")
			if hasGlobal != secure {
				t.Errorf("cfi.pflash01 secure global present %v, secure boot %v", hasGlobal, secure)
			}
			if got := len(option(args, "-netdev")); got != len(s.NICs) {
				t.Errorf("%d -netdev for %d NICs", got, len(s.NICs))
			}
			for _, d := range option(args, "-device") {
				if strings.Contains(d, "host_mtu") && !strings.HasPrefix(d, "virtio-net-pci,") {
					t.Errorf("host_mtu on a device that is not virtio-net: %q", d)
				}
			}
			if got := len(option(args, "-qmp")); got != len(s.QMPSockets) {
				t.Errorf("%d -qmp for %d sockets", got, len(s.QMPSockets))
			}
			checkDisplay(t, s, args)
			// QEMU's own window never opens; a GPU renders headless.
			wantDisplay := "none"
			if s.GPU != nil {
				wantDisplay = "egl-headless,rendernode=" + escape(s.GPU.RenderNode)
			}
			if !slices.Equal(option(args, "-display"), []string{wantDisplay}) {
				t.Errorf("-display %q, want %s", option(args, "-display"), wantDisplay)
			}
			usb := 0
			for _, d := range option(args, "-device") {
				if strings.HasPrefix(d, "qemu-xhci,") {
					usb++
				}
			}
			if want := min(1, len(option(args, "-vnc"))+len(slices.DeleteFunc(option(args, "-device"), func(d string) bool { return !strings.HasPrefix(d, "usb-") }))); usb != want {
				t.Errorf("%d USB controllers, want %d (one when any USB device is there)", usb, want)
			}
		})
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":               "",
		"/data/disk":     "/data/disk",
		"/a,b":           "/a,,b",
		",,":             ",,,,",
		"/x,y,z/d.qcow2": "/x,,y,,z/d.qcow2",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNetdev(t *testing.T) {
	tests := []struct {
		b    Backend
		want string
	}{
		{UserNet{}, "user,id=n,ipv4=on,ipv6=off"},
		{UserNet{IPv6: true}, "user,id=n,ipv4=on,ipv6=on"},
		{UserNet{Forwards: []Forward{{"tcp", "0.0.0.0", 2222, 22}, {"udp", "127.0.0.1", 5353, 53}}},
			"user,id=n,ipv4=on,ipv6=off,hostfwd=tcp:0.0.0.0:2222-:22,hostfwd=udp:127.0.0.1:5353-:53"},
		{TapNet{FD: 3, VhostFD: -1}, "tap,id=n,fd=3"},
		{TapNet{FD: 3, VhostFD: 4}, "tap,id=n,fd=3,vhost=on,vhostfd=4"},
		{TapNet{FD: 0, VhostFD: -1}, "tap,id=n,fd=0"},
		{TapNet{FD: -1, Ifname: "tap0", VhostFD: -1}, "tap,id=n,ifname=tap0,script=no,downscript=no"},
	}
	for _, tc := range tests {
		if got := tc.b.netdev("n"); got != tc.want {
			t.Errorf("%#v.netdev = %q, want %q", tc.b, got, tc.want)
		}
	}
}

func BenchmarkArgs(b *testing.B) {
	var s Spec
	for _, sc := range scenarios {
		if sc.name == "mixed_nics" {
			s = sc.spec()
		}
	}
	s.Firmware = &Firmware{Code: "/usr/share/OVMF/OVMF_CODE_4M.fd", Vars: "/data/vms/vm/efivars.fd"}
	s.Disk, s.Seed = "/data/vms/vm/disk.qcow2", "/data/vms/vm/seed.iso"
	s.Extra = []string{"-device", "virtio-balloon-pci"}
	b.ReportAllocs()
	for b.Loop() {
		_ = Args(s)
	}
}

func TestQMPPathCommaEscaped(t *testing.T) {
	s := base()
	s.QMPSockets = []string{"/data,1/vms/vm/qmp.sock"}
	if !slices.Contains(Args(s), "unix:/data,,1/vms/vm/qmp.sock,server=on,wait=off") {
		t.Errorf("QMP path comma not doubled: %q", Args(s))
	}
}

// checkDisplay holds for every scenario: a TCP VNC listener always has
// its password from the secret object, and no password stands in the args.
func checkDisplay(t *testing.T, s Spec, args []string) {
	t.Helper()
	d := s.Display
	vnc := option(args, "-vnc")
	want := 0
	if d != nil && d.VNCDisplay >= 0 {
		want++
	}
	if d != nil && d.Socket != "" {
		want++
	}
	if len(vnc) != want {
		t.Errorf("-vnc %q for %+v", vnc, d)
	}
	for _, v := range vnc {
		if !strings.HasPrefix(v, "unix:") && !strings.HasSuffix(v, ",password-secret=vncpass") {
			t.Errorf("TCP VNC listener without the password secret: %q", v)
		}
	}
	tablets := 0
	for _, o := range option(args, "-device") {
		if strings.HasPrefix(o, "usb-tablet") {
			tablets++
		}
	}
	switch {
	case d == nil && !s.Hardware.USB && tablets > 0:
		t.Errorf("a USB tablet without graphics or USB=1: %q", args)
	case tablets > 1:
		t.Errorf("%d USB tablets (QEMU refuses a second controller id usb): %q", tablets, args)
	}
}

// USB=1 beside a display must not add a second controller and tablet:
// QEMU refuses a second device id "usb".
func TestUSBWithDisplayOneTablet(t *testing.T) {
	s := Spec{Name: "vm", Machine: "q35", Accel: "tcg", CPU: "max", MemoryMiB: 512, CPUs: 1,
		Display:  &Display{Device: "VGA", VNCDisplay: -1, Socket: "/data/vms/vm/vnc/web.sock"},
		Hardware: Hardware{USB: true}}
	n := 0
	for _, o := range option(Args(s), "-device") {
		if strings.HasPrefix(o, "qemu-xhci") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d qemu-xhci controllers, want 1: %q", n, Args(s))
	}
}
