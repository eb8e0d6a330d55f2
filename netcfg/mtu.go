package netcfg

// EthernetMTU is what a guest NIC uses when it is told nothing.
const EthernetMTU = 1500

// UplinkMTU decides the MTUs of a NIC whose frames cross a host link of
// MTU uplink (the bridge in bridge mode, the parent NIC in direct mode;
// 0: unknown). want is the MTU chosen for the guest (0: the device's 1500).
//
// The guest never gets more than the uplink carries: a larger MTU is
// clamped, and clamped reports it for a warning. A bridge's tap always
// takes the bridge's MTU: a bridge lowers its own MTU to its smallest
// port's, so a smaller tap would shrink the host's LAN, while a larger one
// would only be refused frames by the bridge. A macvtap takes the guest's
// MTU (0: the kernel's default, which is the parent's).
func UplinkMTU(bridge bool, want, uplink int) (guest, link int, clamped bool) {
	guest = want
	effective := want
	if effective == 0 {
		effective = EthernetMTU
	}
	if uplink > 0 && effective > uplink {
		guest, clamped = uplink, true
	}
	if bridge {
		return guest, uplink, clamped
	}
	return guest, guest, clamped
}
