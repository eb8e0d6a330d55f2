package netcfg

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLinkName(t *testing.T) {
	tests := []struct {
		prefix, mac, want string
	}{
		{TapPrefix, "52:54:00:12:34:56", "vmt525400123456"},
		{MacvtapPrefix, "52:54:00:12:34:56", "vmv525400123456"},
		{TapPrefix, "02:ab:cd:ef:01:23", "vmt02abcdef0123"},
	}
	for _, tt := range tests {
		mac, _ := net.ParseMAC(tt.mac)
		got := LinkName(tt.prefix, mac)
		if got != tt.want {
			t.Errorf("LinkName(%q, %s) = %q; want %q", tt.prefix, tt.mac, got, tt.want)
		}
		if len(got) > unix.IFNAMSIZ-1 {
			t.Errorf("%q is longer than an interface name may be", got)
		}
	}
}

func TestParseDevNum(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"246:1\n", unix.Mkdev(246, 1), true},
		{"10:200", unix.Mkdev(10, 200), true},
		{"", 0, false},
		{"246", 0, false},
		{"a:b", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDevNum(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDevNum(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
