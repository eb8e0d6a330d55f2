package netcfg_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrunner/vmrunner/netcfg"
)

func TestDeriveMACProperties(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"vm", "web", "db", "3f2a9c1b7d4e", "a", strings.Repeat("n", 63)} {
		for index := 1; index <= 8; index++ {
			m := netcfg.DeriveMAC(name, index)
			if len(m) != 6 {
				t.Fatalf("DeriveMAC(%q, %d) = %v: not 6 bytes", name, index, m)
			}
			if m[0]&1 != 0 {
				t.Errorf("DeriveMAC(%q, %d) = %v is multicast", name, index, m)
			}
			if m[0]&2 == 0 {
				t.Errorf("DeriveMAC(%q, %d) = %v is not locally administered", name, index, m)
			}
			if got := netcfg.DeriveMAC(name, index); got.String() != m.String() {
				t.Errorf("DeriveMAC(%q, %d) is not stable: %v then %v", name, index, m, got)
			}
			key := name + "/" + string(rune('0'+index))
			if other, dup := seen[m.String()]; dup {
				t.Errorf("DeriveMAC gives %v for both %s and %s", m, other, key)
			}
			seen[m.String()] = key
		}
	}
	// Pinned, so a change of the derivation (which would move every
	// existing VM's DHCP lease) is noticed.
	for _, tc := range []struct {
		name  string
		index int
		want  string
	}{
		{"web", 1, "52:54:00:2a:dc:c2"},
		{"web", 2, "52:54:00:3b:24:0b"},
		{"testhost", 1, netcfg.DeriveMAC("testhost", 1).String()},
	} {
		if got := netcfg.DeriveMAC(tc.name, tc.index).String(); got != tc.want {
			t.Errorf("DeriveMAC(%q, %d) = %s, want %s", tc.name, tc.index, got, tc.want)
		}
	}
	// "a/12" and "a/1" + "2" must not meet: the index is part of the hash
	// input after a separator.
	if netcfg.DeriveMAC("a1", 2).String() == netcfg.DeriveMAC("a", 12).String() {
		t.Errorf("name and index run together")
	}
}

func TestChooseMACOrder(t *testing.T) {
	configured := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	tests := []struct {
		name       string
		configured net.HardwareAddr
		kept       string
		want       string
		err        bool
	}{
		{"configured wins", configured, "52:54:00:11:22:33\n", "02:00:00:00:00:01", false},
		{"configured wins over a broken kept file", configured, "garbage", "02:00:00:00:00:01", false},
		{"kept wins over derived", nil, "52:54:00:11:22:33\n", "52:54:00:11:22:33", false},
		{"kept with spaces", nil, "  52:54:00:11:22:33  \n", "52:54:00:11:22:33", false},
		{"kept in another spelling", nil, "52-54-00-11-22-33", "52:54:00:11:22:33", false},
		{"empty kept is derived", nil, "", netcfg.DeriveMAC("web", 3).String(), false},
		{"blank kept is derived", nil, " \n", netcfg.DeriveMAC("web", 3).String(), false},
		{"broken kept", nil, "garbage", "", true},
		{"EUI-64 kept", nil, "52:54:00:11:22:33:44:55", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := netcfg.ChooseMAC(tc.configured, tc.kept, "web", 3)
			if tc.err {
				if err == nil || !strings.Contains(err.Error(), "mac-3") {
					t.Errorf("ChooseMAC = %v, %v; want an error naming mac-3", got, err)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Errorf("ChooseMAC = %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestKeptMACRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if kept, err := netcfg.ReadKeptMAC(dir, 2); err != nil || kept != "" {
		t.Fatalf("ReadKeptMAC without a file = %q, %v", kept, err)
	}
	m := netcfg.DeriveMAC("web", 2)
	if err := netcfg.KeepMAC(dir, 2, m); err != nil {
		t.Fatal(err)
	}
	if p := netcfg.MACFile(dir, 2); p != filepath.Join(dir, "mac-2") {
		t.Errorf("MACFile = %q", p)
	}
	kept, err := netcfg.ReadKeptMAC(dir, 2)
	if err != nil || kept != m.String()+"\n" {
		t.Fatalf("ReadKeptMAC = %q, %v", kept, err)
	}
	got, err := netcfg.ChooseMAC(nil, kept, "other", 2)
	if err != nil || got.String() != m.String() {
		t.Errorf("ChooseMAC(kept) = %v, %v; want %v", got, err, m)
	}
	if err := os.Mkdir(filepath.Join(dir, "mac-5"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := netcfg.ReadKeptMAC(dir, 5); err == nil {
		t.Errorf("ReadKeptMAC of a directory: no error")
	}
}

// TestKeptMACRefusesSymlinks: a planted mac-N symlink is neither read (its
// target's content would reach the log) nor written through.
func TestKeptMACRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("secret content\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, netcfg.MACFile(dir, 1)); err != nil {
		t.Fatal(err)
	}
	if kept, err := netcfg.ReadKeptMAC(dir, 1); !errors.Is(err, netcfg.ErrNotOwn) || kept != "" {
		t.Errorf("ReadKeptMAC through a symlink = %q, %v; want ErrNotOwn", kept, err)
	}
	if err := netcfg.KeepMAC(dir, 1, netcfg.DeriveMAC("web", 1)); !errors.Is(err, netcfg.ErrNotOwn) {
		t.Errorf("KeepMAC through a symlink: %v; want ErrNotOwn", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "secret content\n" {
		t.Errorf("the symlink's target changed: %q", b)
	}
}

func TestChooseMTUNIC1Detection(t *testing.T) {
	tests := []struct {
		configured, index, detected, want int
	}{
		{0, 1, 1400, 1400}, // a VPN or overlay uplink
		{0, 1, 1450, 1450},
		{0, 1, 1500, 0},
		{0, 3, 1400, 0},
		{1500, 1, 9000, 1500}, // an explicit 1500 is applied
		{9000, 2, 1500, 9000},
	}
	for _, tc := range tests {
		if got := netcfg.ChooseMTU(tc.configured, tc.index, tc.detected); got != tc.want {
			t.Errorf("ChooseMTU(%d, %d, %d) = %d, want %d", tc.configured, tc.index, tc.detected, got, tc.want)
		}
	}
}

func TestHasIPv6Content(t *testing.T) {
	for in, want := range map[string]bool{
		"":        false,
		" \n\t\n": false,
		"fe800000000000000000000000000001 02 40 20 80     eth0\n": true,
		"00000000000000000000000000000001 01 80 10 80       lo":   true,
	} {
		if got := netcfg.HasIPv6(in); got != want {
			t.Errorf("HasIPv6(%q) = %v, want %v", in, got, want)
		}
	}
}
