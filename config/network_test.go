package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseGuestIP(t *testing.T) {
	tests := []struct {
		in, want string // want "": refused
	}{
		{"192.168.77.15", "192.168.77.15/24"},
		{" 10.1.2.3/16 ", "10.1.2.3/16"},
		{"172.16.0.9/29", "172.16.0.9/29"},
		{"100.64.3.4", "100.64.3.4/24"}, // not private: accepted, as the seed does
		{"192.168.77.1", "192.168.77.1/24"},
		{"192.168.77.0", ""},   // the network
		{"192.168.77.255", ""}, // broadcast
		{"192.168.77.2", ""},   // QEMU's host side
		{"192.168.77.3", ""},   // QEMU's DNS
		{"10.0.0.7/30", ""},
		{"10.0.0.7/7", ""},
		{"127.0.0.5", ""},
		{"169.254.1.5", ""},
		{"224.0.0.5", ""},
		{"0.0.0.0", ""},
		{"fd00::15", ""},
		{"10.0.2.15,10.0.3.15", ""},
		{"10.0.2.15/", ""},
		{"host", ""},
		{"", ""},
	}
	for _, tc := range tests {
		got, err := ParseGuestIP("NETWORK_GUEST_IP", tc.in)
		switch {
		case tc.want == "" && !isConfigError(err, "NETWORK_GUEST_IP"):
			t.Errorf("ParseGuestIP(%q) = %v, %v; want a NETWORK_GUEST_IP error", tc.in, got, err)
		case tc.want != "" && (err != nil || got.String() != tc.want):
			t.Errorf("ParseGuestIP(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestParseGuestIP6(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"fd00:77::15", "fd00:77::15/64"},
		{"fd00:77::15/64", "fd00:77::15/64"},
		{"2001:db8::abcd", "2001:db8::abcd/64"},
		{"fd00:77::15/48", ""}, // SLAAC needs a /64
		{"fd00:77::", ""},
		{"fd00:77::2", ""},
		{"fd00:77::3", ""},
		{"fe80::5", ""},
		{"::1", ""},
		{"ff02::1", ""},
		{"::ffff:10.0.2.15", ""},
		{"10.0.2.15", ""},
	}
	for _, tc := range tests {
		got, err := ParseGuestIP6("NETWORK_GUEST_IP6", tc.in)
		switch {
		case tc.want == "" && !isConfigError(err, "NETWORK_GUEST_IP6"):
			t.Errorf("ParseGuestIP6(%q) = %v, %v; want a NETWORK_GUEST_IP6 error", tc.in, got, err)
		case tc.want != "" && (err != nil || got.String() != tc.want):
			t.Errorf("ParseGuestIP6(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestNATNetFor(t *testing.T) {
	n := NATNetFor(netip.MustParsePrefix("192.168.77.15/24"), netip.MustParsePrefix("fd00:77::15/64"))
	want := NATNet{Net: netip.MustParsePrefix("192.168.77.0/24"), Host: netip.MustParseAddr("192.168.77.2"),
		DNS: netip.MustParseAddr("192.168.77.3"), Guest: netip.MustParseAddr("192.168.77.15"),
		Net6: netip.MustParsePrefix("fd00:77::/64"), Host6: netip.MustParseAddr("fd00:77::2"), DNS6: netip.MustParseAddr("fd00:77::3")}
	if n != want {
		t.Errorf("NATNetFor = %+v, want %+v", n, want)
	}
	if got := lastAddr(netip.MustParsePrefix("10.1.2.3/16")); got.String() != "10.1.255.255" {
		t.Errorf("lastAddr(10.1.2.3/16) = %s", got)
	}
}

func FuzzParseGuestIP(f *testing.F) {
	for _, s := range []string{"192.168.77.15", "10.0.0.9/29", "fd00::15/64", "1.2.3.4/33", "::", "a,b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := ParseGuestIP("NETWORK_GUEST_IP", s); err == nil {
			n := NATNetFor(p, netip.Prefix{})
			if !n.Net.Contains(n.Guest) || !n.Net.Contains(n.DNS) || n.Guest == n.Host || n.Guest == n.DNS || n.Guest == n.Net.Addr() {
				t.Errorf("%q accepted as %v, network %+v", s, p, n)
			}
		}
		if p, err := ParseGuestIP6("NETWORK_GUEST_IP6", s); err == nil && p.Bits() != 64 {
			t.Errorf("%q accepted as %v", s, p)
		}
	})
}

func TestNICAdditions(t *testing.T) {
	c := mustLoad(t, map[string]string{"NETWORK_GUEST_IP": "192.168.77.15", "NETWORK_GUEST_IP6": "fd00:77::15",
		"NETWORK2_MODE": "container", "NETWORK2_CONTAINER_INTERFACE": "net1", "NETWORK2_BOOT": "1",
		"NETWORK3_MODE": "container", "NETWORK3_CONTAINER_INTERFACE": "eth2", "NETWORK3_CONTAINER_BRIDGE": "br-lab"})
	if len(c.NICs) != 3 {
		t.Fatalf("NICs %+v", c.NICs)
	}
	n1, n2, n3 := c.NICs[0], c.NICs[1], c.NICs[2]
	if n1.GuestIP.String() != "192.168.77.15/24" || n1.GuestIP6.String() != "fd00:77::15/64" || n1.Boot {
		t.Errorf("NIC 1 %+v", n1)
	}
	if n2.Mode != NetContainer || n2.ContainerIf != "net1" || n2.ContainerBridge != "vmbr2" || !n2.Boot {
		t.Errorf("NIC 2 %+v", n2)
	}
	if n3.ContainerIf != "eth2" || n3.ContainerBridge != "br-lab" || n3.Boot {
		t.Errorf("NIC 3 %+v", n3)
	}
	if c.BootNIC().Index != 2 || !c.NetworkFirst() {
		t.Errorf("boot NIC %d, network first %v; want NIC 2 first", c.BootNIC().Index, c.NetworkFirst())
	}
	show := map[string]string{}
	for _, kv := range c.Effective() {
		show[kv[0]] = kv[1]
	}
	for k, v := range map[string]string{"NETWORK_GUEST_IP": "192.168.77.15/24", "NETWORK2_BOOT": "1", "NETWORK2_CONTAINER_INTERFACE": "net1",
		"NETWORK3_CONTAINER_BRIDGE": "br-lab", "IPXE_ENABLE": "0"} {
		if show[k] != v {
			t.Errorf("--show-config %s=%q, want %q", k, show[k], v)
		}
	}
}

func TestNICAdditionsRefused(t *testing.T) {
	rom := t.TempDir() + "/missing.rom"
	tests := []struct {
		env    map[string]string
		name   string
		advice string
	}{
		{map[string]string{"NETWORK_MODE": "bridge", "NETWORK_GUEST_IP": "192.168.1.50"}, "NETWORK_GUEST_IP", "CLOUD_INIT_NETWORK_CONFIG"},
		{map[string]string{"NETWORK2_MODE": "direct", "NETWORK2_GUEST_IP6": "fd00::5"}, "NETWORK2_GUEST_IP6", "NETWORK2_MODE=nat"},
		{map[string]string{"NETWORK_GUEST_IP": "10.0.2.2"}, "NETWORK_GUEST_IP", "host side"},
		{map[string]string{"NETWORK_MODE": "container"}, "NETWORK_CONTAINER_INTERFACE", "required"},
		{map[string]string{"NETWORK_MODE": "container", "NETWORK_CONTAINER_INTERFACE": "eth1", "NETWORK_CONTAINER_BRIDGE": "eth1"}, "NETWORK_CONTAINER_BRIDGE", "other than"},
		{map[string]string{"NETWORK_MODE": "container", "NETWORK_CONTAINER_INTERFACE": "eth1;reboot"}, "NETWORK_CONTAINER_INTERFACE", "eth1"},
		{map[string]string{"NETWORK_MODE": "bridge", "NETWORK_CONTAINER_BRIDGE": "vmbr0"}, "NETWORK_CONTAINER_BRIDGE", "NETWORK_MODE=container"},
		{map[string]string{"NETWORK_BOOT": "yes please"}, "NETWORK_BOOT", "1/0"},
		{map[string]string{"NETWORK2_MODE": "none", "NETWORK2_BOOT": "1"}, "NETWORK2_BOOT", "does not exist"},
		{map[string]string{"NETWORK_BOOT": "1", "NETWORK2_MODE": "nat", "NETWORK2_BOOT": "1"}, "NETWORK2_BOOT", "one NIC only"},
		{map[string]string{"IPXE_ENABLE": "1", "BOOT_ORDER": "cdrom,hd"}, "IPXE_ENABLE", "cdrom,hd,network"},
		{map[string]string{"IPXE_ENABLE": "1", "NETWORK_MODE": "none"}, "IPXE_ENABLE", "no NIC"},
		{map[string]string{"IPXE_ROM_PATH": "/usr/lib/ipxe/qemu/efi-virtio.rom"}, "IPXE_ROM_PATH", "IPXE_ENABLE=1"},
		{map[string]string{"IPXE_ENABLE": "1", "IPXE_ROM_PATH": rom}, "IPXE_ROM_PATH", "ipxe-qemu"},
	}
	for _, tc := range tests {
		_, err := Load(tc.env, testHost)
		if !isConfigError(err, tc.name) || !strings.Contains(err.Error(), tc.advice) {
			t.Errorf("Load(%v) = %v, want a %s error saying %q", tc.env, err, tc.name, tc.advice)
		}
	}
}

func TestIPXEMarksTheBootNIC(t *testing.T) {
	c := mustLoad(t, map[string]string{"IPXE_ENABLE": "1", "NETWORK2_MODE": "nat", "BOOT_ORDER": "hd,network"})
	if !c.IPXE.Enabled || !c.NICs[0].Boot || c.NICs[1].Boot || c.NetworkFirst() {
		t.Errorf("IPXE_ENABLE=1 with BOOT_ORDER=hd,network: %+v, NICs %+v, network first %v", c.IPXE, c.NICs, c.NetworkFirst())
	}
	c = mustLoad(t, map[string]string{"IPXE_ENABLE": "1", "NETWORK2_MODE": "nat", "NETWORK2_BOOT": "1"})
	if c.NICs[0].Boot || c.BootNIC().Index != 2 || !c.NetworkFirst() {
		t.Errorf("IPXE_ENABLE=1 with NETWORK2_BOOT=1: NICs %+v", c.NICs)
	}
	if c := mustLoad(t, map[string]string{}); c.NetworkFirst() || c.BootNIC().Index != 1 {
		t.Errorf("defaults: network first %v, boot NIC %+v", c.NetworkFirst(), c.BootNIC())
	}
}
