package netcfg

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

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
