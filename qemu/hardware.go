package qemu

import (
	"strings"
)

// ioThreadID is the one iothread the virtio disks share.
const ioThreadID = "io0"

// hyperVFlags are the Hyper-V enlightenments Windows guests use to run
// faster (relaxed timing, virtual APIC, spinlock hints, reference time).
// They are the ones QEMU takes under both KVM and TCG: vpindex, synic and
// stimer need KVM's support and make TCG refuse to start.
var hyperVFlags = []string{"hv_relaxed", "hv_vapic", "hv_spinlocks=0x1fff", "hv_time"}

func cpuOption(s Spec) string {
	if !s.Hardware.HyperV {
		return s.CPU
	}
	return s.CPU + "," + strings.Join(hyperVFlags, ",")
}

func rngArgs(s Spec) []string {
	if s.Hardware.NoRNG {
		return nil
	}
	// Guests draw on entropy early (SSH host keys, cloud-init); without a
	// virtio RNG a TCG guest can stall for seconds.
	return []string{"-device", "virtio-rng-pci"}
}

// hardwareArgs adds the optional devices.
func hardwareArgs(s Spec) []string {
	var a []string
	if s.Hardware.Balloon {
		a = append(a, "-device", "virtio-balloon-pci")
	}
	if s.Hardware.USB && !hasTablet(s) {
		if !usbDisks(s) {
			a = append(a, "-device", "qemu-xhci,id=usb")
		}
		a = append(a, "-device", "usb-tablet,bus=usb.0")
	}
	return a
}

// usbDiskController is the one USB controller (QEMU refuses a second
// device id usb) when the disks are on USB: they add it, as they must name
// its bus after it, and the display and USB=1 then do not. Its 15 USB 2
// ports take every disk vmrunner attaches and the tablet (the default is 4).
func usbDiskController() []string { return []string{"-device", "qemu-xhci,id=usb,p2=15"} }

func usbDisks(s Spec) bool {
	return s.DiskBus == BusUSB && (s.Disk != "" || len(s.MoreDisks) > 0)
}

// tpmArgs attach swtpm as a TIS TPM: the interface every x86 firmware
// (OVMF and SeaBIOS) and guest (Linux, Windows 11) drives, and the one
// QEMU also has on other architectures (tpm-tis-device on arm64 virt);
// tpm-crb would be x86 only.
func tpmArgs(s Spec) []string {
	if s.TPM == nil {
		return nil
	}
	return []string{
		"-chardev", "socket,id=chrtpm,path=" + escape(s.TPM.Socket),
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", "tpm-tis,tpmdev=tpm0",
	}
}

// videoDevice is the display adapter: with a GPU, virtio-vga-gl, which
// also has VGA's modes for the firmware and installers.
func videoDevice(s Spec) string {
	if s.GPU != nil {
		return "virtio-vga-gl"
	}
	return s.Display.Device
}

// displayBackend is QEMU's local display: none, or with a GPU the
// headless EGL renderer on the render node, which the VNC listeners (if
// any) show.
func displayBackend(s Spec) string {
	if s.GPU != nil {
		return "egl-headless,rendernode=" + escape(s.GPU.RenderNode)
	}
	return "none"
}

// hasTablet says whether the display already brings the USB controller
// and tablet, which USB must not add a second time (QEMU refuses a second
// device id "usb"): every display comes with them.
func hasTablet(s Spec) bool { return s.Display != nil }

func ioThread(s Spec) bool {
	return s.Hardware.IOThread && (s.DiskBus == BusVirtio || s.DiskBus == "")
}
