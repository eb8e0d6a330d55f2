package qemu

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Args returns the QEMU arguments (without the binary) for s. Each part of
// the machine is its own small function so a golden test can pin it.
func Args(s Spec) []string {
	var a []string
	for _, part := range []func(Spec) []string{
		baseArgs, firmwareArgs, kernelArgs, diskArgs, cdArgs, nicArgs, hardwareArgs, tpmArgs, consoleArgs, qmpArgs,
		guestAgentArgs, shareArgs,
	} {
		a = append(a, part(s)...)
	}
	return append(a, s.Extra...)
}

func baseArgs(s Spec) []string {
	machine := s.Machine
	if s.Firmware != nil && s.Firmware.Secure {
		machine += ",smm=on"
	}
	a := []string{
		"-name", "guest=" + s.Name,
		"-nodefaults", "-no-user-config",
		"-machine", machine,
		"-accel", s.Accel,
		"-cpu", cpuOption(s),
		"-m", fmt.Sprint(s.MemoryMiB),
		"-smp", fmt.Sprint(s.CPUs),
	}
	a = append(a, rngArgs(s)...)
	if s.UUID != "" {
		a = append(a, "-uuid", s.UUID)
	}
	if s.Sandbox {
		// A QEMU taken over by its guest can then not exec, change its
		// user, or use the system calls QEMU itself no longer needs.
		a = append(a, "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
	}
	return a
}

func firmwareArgs(s Spec) []string {
	f := s.Firmware
	if f == nil {
		return nil
	}
	var a []string
	if f.Secure {
		a = append(a, "-global", "driver=cfi.pflash01,property=secure,value=on")
	}
	return append(a,
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+escape(f.Code),
		"-drive", "if=pflash,format=raw,unit=1,file="+escape(f.Vars),
	)
}

func kernelArgs(s Spec) []string {
	if s.Kernel == "" {
		return nil
	}
	a := []string{"-kernel", s.Kernel}
	if s.Initrd != "" {
		a = append(a, "-initrd", s.Initrd)
	}
	if s.Cmdline != "" {
		a = append(a, "-append", s.Cmdline)
	}
	return a
}

// diskArgs attaches the VM's disk (booted) and then the others, all on one
// bus with one cache mode.
func diskArgs(s Spec) []string {
	drives := s.MoreDisks
	if s.Disk != "" {
		drives = append([]Drive{{ID: "disk0", Path: s.Disk, Format: "qcow2"}}, drives...)
	}
	if len(drives) == 0 {
		return nil
	}
	var a []string
	if scsiDisks(s) {
		a = scsiController()
	}
	if usbDisks(s) {
		a = usbDiskController()
	}
	if ioThread(s) {
		a = append(a, "-object", "iothread,id="+ioThreadID)
	}
	for i, d := range drives {
		dev := diskDevice(s, i, d.ID)
		drive := driveOption(s, d)
		if s.Disk != "" && i == 0 {
			dev += bootIndexOption(s, BootDisk)
			if s.DiskBase != "" {
				a = append(a, "-blockdev", baseNode(s, d.ID+"-base"))
				drive += ",backing=" + d.ID + "-base"
			}
		}
		a = append(a, "-drive", drive, "-device", dev)
	}
	return a
}

// baseNode opens the overlay's base as a read-only node with no backing
// of its own: whatever file or address a base's header names, QEMU never
// opens it (the overlay's header names the base, which is ours; the
// base's header is the image supplier's).
func baseNode(s Spec, name string) string {
	type cache struct {
		Direct bool `json:"direct"`
	}
	type file struct {
		Driver   string `json:"driver"`
		Filename string `json:"filename"`
		AIO      string `json:"aio,omitempty"`
		Cache    *cache `json:"cache,omitempty"`
	}
	n := struct {
		Driver   string          `json:"driver"`
		NodeName string          `json:"node-name"`
		ReadOnly bool            `json:"read-only"`
		Backing  json.RawMessage `json:"backing,omitempty"`
		File     file            `json:"file"`
	}{Driver: s.DiskBaseFormat, NodeName: name, ReadOnly: true,
		File: file{Driver: "file", Filename: s.DiskBase, AIO: s.DiskAIO}}
	if s.DiskBaseFormat == "qcow2" {
		n.Backing = json.RawMessage("null")
	}
	if s.DiskCache == "none" || s.DiskCache == "directsync" { // both open with O_DIRECT
		n.File.Cache = &cache{Direct: true}
	}
	b, err := json.Marshal(n)
	if err != nil {
		panic(err) // plain strings and bools always marshal
	}
	return string(b)
}

func driveOption(s Spec, d Drive) string {
	o := "file=" + escape(d.Path) + ",if=none,id=" + d.ID + ",format=" + d.Format + ",discard=unmap"
	if s.DiskCache != "" {
		o += ",cache=" + s.DiskCache
	}
	if s.DiskAIO != "" {
		o += ",aio=" + s.DiskAIO
	}
	return o
}

// diskDevice is the -device of the i-th disk on s's bus.
func diskDevice(s Spec, i int, id string) string {
	switch s.DiskBus {
	case BusSCSI:
		return "scsi-hd,bus=scsi0.0,drive=" + id
	case BusNVMe:
		// QEMU refuses an NVMe controller without a serial.
		return "nvme,serial=" + id + ",drive=" + id
	case BusIDE:
		return "ide-hd," + ideSlot(s.Machine, i) + ",drive=" + id
	case BusUSB:
		return "usb-storage,bus=usb.0,drive=" + id
	}
	if ioThread(s) {
		return "virtio-blk-pci,drive=" + id + ",iothread=" + ioThreadID
	}
	return "virtio-blk-pci,drive=" + id
}

// IDESlots is how many IDE disks machine takes: q35's AHCI has six ports
// of one disk each, the pc (i440fx) PIIX two buses of two.
func IDESlots(machine string) int {
	if isQ35(machine) {
		return 6
	}
	return 4
}

func ideSlot(machine string, i int) string {
	if isQ35(machine) {
		return fmt.Sprintf("bus=ide.%d", i)
	}
	return fmt.Sprintf("bus=ide.%d,unit=%d", i/2, i%2)
}

func isQ35(machine string) bool {
	machine, _, _ = strings.Cut(machine, ",") // q35,smm=on
	return machine == "q35" || strings.HasPrefix(machine, "pc-q35-")
}

func scsiController() []string { return []string{"-device", "virtio-scsi-pci,id=scsi0"} }

func scsiDisks(s Spec) bool {
	return s.DiskBus == BusSCSI && (s.Disk != "" || len(s.MoreDisks) > 0)
}

// bootIndex is the firmware's boot position of dev (BootDisk: the VM's
// disk, BootCD: the CD drive, BootNetwork: the boot NIC); ok is false for
// a device that must not boot. The controller's override (Boot) puts its
// device first and the disk after it; without one, BOOT_ORDER's list
// (BootOrder) decides; without that, the CD boots first when it holds a
// medium (the installer), then the disk.
func bootIndex(s Spec, dev BootDevice) (int, bool) {
	switch {
	case s.Boot != BootDefault:
		switch dev {
		case s.Boot:
			return 0, true
		case BootDisk:
			return 1, true
		}
		return 0, false
	case len(s.BootOrder) > 0:
		order := s.BootOrder
		if s.NetworkFirst && !slices.Contains(order, BootNetwork) {
			order = append([]BootDevice{BootNetwork}, order...)
		}
		i := slices.Index(order, dev)
		return i, i >= 0
	}
	first := 0
	if s.NetworkFirst {
		first = 1
	}
	switch dev {
	case BootNetwork:
		return 0, s.NetworkFirst
	case BootCD:
		return first, s.CDROM != ""
	case BootDisk:
		return first + 1, true
	}
	return 0, false
}

func bootIndexOption(s Spec, dev BootDevice) string {
	if i, ok := bootIndex(s, dev); ok {
		return fmt.Sprintf(",bootindex=%d", i)
	}
	return ""
}

// cdArgs attaches the installer ISO and the seed as CDs on virtio-scsi:
// cloud kernels (e.g. Debian's linux-image-cloud) lack AHCI but carry
// virtio-scsi and sr_mod, and both SeaBIOS and OVMF boot from it. The
// controller is shared with SCSI disks, which diskArgs made it for.
// The CD drive comes first, so it is the guest's first CD (sr0), and it
// exists empty with CDDrive, for a medium inserted later over QMP.
func cdArgs(s Spec) []string {
	if s.Seed == "" && s.CDROM == "" && !s.CDDrive {
		return nil
	}
	var a []string
	if !scsiDisks(s) {
		a = scsiController()
	}
	if s.CDROM != "" || s.CDDrive {
		drive := "if=none,id=cd0,media=cdrom,readonly=on"
		if s.CDROM != "" {
			drive = "file=" + escape(s.CDROM) + "," + drive + ",format=raw"
		}
		a = append(a, "-drive", drive,
			"-device", "scsi-cd,bus=scsi0.0,drive=cd0,id="+CDDevice+bootIndexOption(s, BootCD))
	}
	if s.Seed != "" {
		a = append(a,
			"-drive", "file="+escape(s.Seed)+",if=none,id=cidata,media=cdrom,readonly=on,format=raw",
			"-device", "scsi-cd,bus=scsi0.0,drive=cidata")
	}
	return a
}

func nicArgs(s Spec) []string {
	var a []string
	for _, n := range s.NICs {
		dev := n.Model + ",netdev=" + n.ID + ",mac=" + n.MAC
		if n.Boot {
			dev += bootIndexOption(s, BootNetwork)
		}
		if n.MTU != 0 && n.Model == "virtio-net-pci" {
			dev += fmt.Sprintf(",host_mtu=%d", n.MTU)
		}
		if n.ROMFile != "" {
			dev += ",romfile=" + escape(n.ROMFile)
		}
		if n.ModernOnly {
			dev += ",disable-legacy=on"
		}
		a = append(a, "-netdev", n.Backend.netdev(n.ID), "-device", dev)
	}
	return a
}

func (u UserNet) netdev(id string) string {
	// QEMU turns IPv4 off when only ipv6= is given, so name both.
	nd := "user,id=" + id + ",ipv4=on,ipv6=" + onOff(u.IPv6)
	for _, o := range [][2]string{{"net", u.Net}, {"host", u.Host}, {"dhcpstart", u.DHCPStart}, {"dns", u.DNS},
		{"ipv6-net", u.IPv6Net}, {"ipv6-host", u.IPv6Host}, {"ipv6-dns", u.IPv6DNS}} {
		if o[1] != "" {
			nd += "," + o[0] + "=" + o[1]
		}
	}
	for _, f := range u.Forwards {
		nd += fmt.Sprintf(",hostfwd=%s:%s:%d-%s:%d", f.Proto, f.HostAddr, f.HostPort, u.DHCPStart, f.GuestPort)
	}
	return nd
}

func (t TapNet) netdev(id string) string {
	nd := "tap,id=" + id
	if t.FD >= 0 {
		nd += fmt.Sprintf(",fd=%d", t.FD)
	} else {
		nd += ",ifname=" + t.Ifname + ",script=no,downscript=no"
	}
	if t.VhostFD >= 0 {
		nd += fmt.Sprintf(",vhost=on,vhostfd=%d", t.VhostFD)
	}
	return nd
}

// consoleArgs puts the serial console on QEMU's stdio, which the supervisor
// owns as pipes; signal=off keeps Ctrl-C for the guest, never for QEMU.
func consoleArgs(s Spec) []string {
	return append([]string{
		"-chardev", "stdio,id=serial0,signal=off",
		"-serial", "chardev:serial0",
		"-display", displayBackend(s),
	}, displayArgs(s)...)
}

// displayArgs adds the screen, an absolute pointer (a USB tablet, so VNC
// clients' cursors match the guest's) and the VNC listeners.
// With a GPU and no display, the guest still gets the GPU, for rendering.
func displayArgs(s Spec) []string {
	d := s.Display
	if d == nil {
		if s.GPU != nil {
			return []string{"-device", videoDevice(s) + ",id=video0"}
		}
		return nil
	}
	a := []string{"-device", videoDevice(s) + ",id=video0"}
	if !usbDisks(s) {
		a = append(a, "-device", "qemu-xhci,id=usb")
	}
	a = append(a, "-device", "usb-tablet,bus=usb.0")
	if d.USBKeyboard {
		a = append(a, "-device", "usb-kbd,bus=usb.0")
	}
	if d.Keymap != "" {
		a = append(a, "-k", d.Keymap)
	}
	if d.VNCDisplay >= 0 {
		host := d.VNCHost
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		a = append(a,
			"-object", "secret,id=vncpass,format=raw,file="+escape(d.PasswordFile),
			"-vnc", fmt.Sprintf("%s:%d,id=%s,password-secret=vncpass", host, d.VNCDisplay, VNCDisplayTCP))
	}
	if d.Socket != "" {
		// QEMU 7.2 refuses a websocket on a unix socket ("UNIX sockets not
		// supported with websock"), so this listener speaks plain RFB and
		// the web console wraps it in WebSocket frames itself.
		a = append(a, "-vnc", "unix:"+escape(d.Socket)+",id="+VNCDisplaySocket)
	}
	return a
}

func qmpArgs(s Spec) []string {
	var a []string
	for _, p := range s.QMPSockets {
		a = append(a, "-qmp", "unix:"+escape(p)+",server=on,wait=off")
	}
	return a
}

// GuestAgentPort is the agent port's device id: QEMU names it in the
// VSERPORT_CHANGE event it sends when the guest opens or closes the port
// (only for ports with an id).
const GuestAgentPort = "qga0port"

// guestAgentArgs gives the guest the port qemu-guest-agent looks for, its
// host end a unix socket vmrunner connects to. wait=off: QEMU does not wait
// for a client before starting the guest.
func guestAgentArgs(s Spec) []string {
	if s.GuestAgent == "" {
		return nil
	}
	return []string{
		"-chardev", "socket,id=qga0,path=" + escape(s.GuestAgent) + ",server=on,wait=off",
		"-device", "virtio-serial-pci,id=vser0",
		"-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0,id=" + GuestAgentPort,
	}
}

// shareArgs attaches the shared folders. virtiofsd reads guest memory
// directly, so with any virtiofs share the guest's RAM is a shared memfd.
func shareArgs(s Spec) []string {
	var a []string
	memfd := false
	for _, sh := range s.Shares {
		if sh.Virtiofs {
			if !memfd {
				memfd = true
				a = append(a,
					"-object", fmt.Sprintf("memory-backend-memfd,id=mem0,size=%dM,share=on", s.MemoryMiB),
					"-numa", "node,memdev=mem0")
			}
			a = append(a,
				"-chardev", "socket,id="+sh.ID+",path="+escape(sh.Socket),
				"-device", "vhost-user-fs-pci,chardev="+sh.ID+",tag="+sh.Tag)
			continue
		}
		fs := "local,id=" + sh.ID + ",path=" + escape(sh.Path) + ",security_model=" + sh.SecurityModel
		if sh.ReadOnly {
			fs += ",readonly=on"
		}
		a = append(a, "-fsdev", fs, "-device", "virtio-9p-pci,fsdev="+sh.ID+",mount_tag="+sh.Tag)
	}
	return a
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// escape doubles commas, QEMU's way of quoting them inside option values.
func escape(path string) string { return strings.ReplaceAll(path, ",", ",,") }
