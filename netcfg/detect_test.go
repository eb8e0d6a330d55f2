package netcfg

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestHasIPv6(t *testing.T) {
	tests := []struct {
		ifInet6 string
		want    bool
	}{
		{"", false},
		{"\n", false},
		{"00000000000000000000000000000001 01 80 10 80       lo\n", true},
	}
	for _, tt := range tests {
		if got := HasIPv6(tt.ifInet6); got != tt.want {
			t.Errorf("HasIPv6(%q) = %v; want %v", tt.ifInet6, got, tt.want)
		}
	}
}

func TestChooseMTU(t *testing.T) {
	tests := []struct {
		name                        string
		configured, index, detected int
		want                        int
	}{
		{"jumbo uplink, NIC 1", 0, 1, 9000, 9000},
		{"jumbo uplink, NIC 2 left alone", 0, 2, 9000, 0},
		{"Ethernet uplink", 0, 1, 1500, 0},
		{"no default route", 0, 1, 0, 0},
		{"override wins", 1400, 1, 9000, 1400},
		{"override on NIC 2", 1400, 2, 9000, 1400},
	}
	for _, tt := range tests {
		if got := ChooseMTU(tt.configured, tt.index, tt.detected); got != tt.want {
			t.Errorf("%s: ChooseMTU(%d, %d, %d) = %d; want %d", tt.name, tt.configured, tt.index, tt.detected, got, tt.want)
		}
	}
}

func TestIsDefault(t *testing.T) {
	cidr := func(s string) *net.IPNet {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	tests := []struct {
		dst  *net.IPNet
		want bool
	}{
		{nil, true}, // netlink before v1.3
		{cidr("0.0.0.0/0"), true},
		{cidr("::/0"), true},
		{cidr("10.0.0.0/8"), false},
		{cidr("fec0::/64"), false},
	}
	for _, tt := range tests {
		if got := isDefault(netlink.Route{Dst: tt.dst}); got != tt.want {
			t.Errorf("isDefault(%v) = %v; want %v", tt.dst, got, tt.want)
		}
	}
}

func TestRouteLink(t *testing.T) {
	tests := []struct {
		r    netlink.Route
		want int
	}{
		{netlink.Route{LinkIndex: 4}, 4},
		{netlink.Route{MultiPath: []*netlink.NexthopInfo{{LinkIndex: 7}, {LinkIndex: 8}}}, 7},
		{netlink.Route{}, 0},
	}
	for _, tt := range tests {
		if got := routeLink(tt.r); got != tt.want {
			t.Errorf("routeLink(%+v) = %d; want %d", tt.r, got, tt.want)
		}
	}
}
