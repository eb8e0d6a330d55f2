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
		a = append(a, "-device", "qemu-xhci,id=usb", "-device", "usb-tablet,bus=usb.0")
	}
	return a
}

// hasTablet says whether the display already brings the USB controller
// and tablet, which USB must not add a second time (QEMU refuses a second
// device id "usb"). The VNC display here has none; the graphical console
// of issue 12 adds one with every display.
func hasTablet(Spec) bool { return false }

func ioThread(s Spec) bool {
	return s.Hardware.IOThread && (s.DiskBus == BusVirtio || s.DiskBus == "")
}
