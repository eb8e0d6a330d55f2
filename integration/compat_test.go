package integration

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCompatNICModels boots the test guest with each NIC model the seed
// project accepts and checks that the guest's driver finds the device and
// gets its DHCP lease from QEMU's user network.
func TestCompatNICModels(t *testing.T) {
	needGuest(t)
	for _, model := range []string{"virtio", "e1000", "e1000e", "rtl8139", "ne2k_pci", "pcnet", "vmxnet3"} {
		t.Run(model, func(t *testing.T) {
			env := GuestEnv(t)
			env["NETWORK_MODEL"] = model
			// no_timer_check: on a loaded host a TCG guest can fail the
			// kernel's IO-APIC timer check and panic before any driver loads.
			env["KERNEL_CMDLINE"] += " vmtest.slaac_wait=1 no_timer_check"
			v := Start(t, env)
			v.WaitReady()
			nic := waitNIC(v, "eth0")
			if !strings.HasPrefix(nic.IPv4, "10.0.2.15/") {
				t.Errorf("NETWORK_MODEL=%s: the guest's eth0 is %+v; want the lease 10.0.2.15", model, nic)
			}
			v.Signal(syscall.SIGTERM)
			if code := v.Wait(time.Minute); code != 0 {
				t.Errorf("exit status %d; want 0", code)
			}
		})
	}
}
