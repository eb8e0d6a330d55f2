package netcfg

import (
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// inNewNetns moves the test's goroutine, locked to its thread, into a
// network namespace of its own (netlink's sockets are made in the calling
// thread's namespace). The thread is never unlocked, so it ends with the
// test instead of going back to the scheduler in that namespace.
func inNewNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	// The run id's socket is a name in one network namespace: this test
	// claims one in its own, and the tests after it one in theirs.
	newRunID := func() { thisRun.once, thisRun.id, thisRun.err = sync.Once{}, "", nil }
	newRunID()
	t.Cleanup(newRunID)
}

func mustDo(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// addressingOf lists link's global addresses and its routes as text.
func addressingOf(t *testing.T, name string) []string {
	t.Helper()
	l, err := netlink.LinkByName(name)
	mustDo(t, err)
	addrs, routes, err := addressing(l)
	mustDo(t, err)
	var out []string
	for _, a := range addrs {
		out = append(out, "addr "+a.IPNet.String())
	}
	for _, r := range routes {
		out = append(out, "route "+dst(r.Dst)+" via "+r.Gw.String())
	}
	slices.Sort(out)
	return out
}

// TestAdoptInterface: the interface's addresses and routes move to the
// bridge, which takes its MAC and MTU, and come back on Release; a
// killed run's bridge is undone by the next adoption; a foreign link of
// the bridge's name is refused.
func TestAdoptInterface(t *testing.T) {
	inNewNetns(t)
	{
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU = "eth1", 1400
		mustDo(t, netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth1p"}))
		eth1, err := netlink.LinkByName("eth1")
		mustDo(t, err)
		for _, n := range []string{"eth1", "eth1p"} {
			l, _ := netlink.LinkByName(n)
			mustDo(t, netlink.LinkSetUp(l))
		}
		addr, _ := netlink.ParseAddr("10.77.5.9/24")
		mustDo(t, netlink.AddrAdd(eth1, addr))
		_, dst, _ := net.ParseCIDR("10.99.0.0/16")
		mustDo(t, netlink.RouteAdd(&netlink.Route{LinkIndex: eth1.Attrs().Index, Dst: dst, Gw: net.ParseIP("10.77.5.1")}))
		before := addressingOf(t, "eth1")
		if len(before) != 2 {
			t.Fatalf("set-up: %q", before)
		}

		b, err := AdoptInterface("eth1", "vmbr1", "vmrunner t NIC 1")
		mustDo(t, err)
		br, err := netlink.LinkByName("vmbr1")
		mustDo(t, err)
		eth1, _ = netlink.LinkByName("eth1")
		if got := addressingOf(t, "vmbr1"); !slices.Equal(got, before) {
			t.Errorf("bridge has %q, want %q", got, before)
		}
		if got := addressingOf(t, "eth1"); len(got) != 0 {
			t.Errorf("eth1 kept %q", got)
		}
		if eth1.Attrs().MasterIndex != br.Attrs().Index || br.Attrs().MTU != 1400 ||
			br.Attrs().HardwareAddr.String() != eth1.Attrs().HardwareAddr.String() || !strings.HasPrefix(br.Attrs().Alias, "vmrunner t NIC 1 run ") {
			t.Errorf("bridge %+v, eth1 master %d", br.Attrs(), eth1.Attrs().MasterIndex)
		}
		if _, err := AdoptInterface("eth1", "vmbr1", "vmrunner t NIC 1"); err == nil {
			t.Errorf("a second adoption of a live bridge succeeded")
		}
		mustDo(t, b.Release())
		mustDo(t, b.Release())
		if got := addressingOf(t, "eth1"); !slices.Equal(got, before) {
			t.Errorf("eth1 after Release has %q, want %q", got, before)
		}
		if _, err := netlink.LinkByName("vmbr1"); err == nil {
			t.Errorf("the bridge is still there")
		}

		// A killed run's: its alias names a run id no process holds.
		b, err = AdoptInterface("eth1", "vmbr1", "vmrunner t NIC 1")
		mustDo(t, err)
		br, _ = netlink.LinkByName("vmbr1")
		mustDo(t, netlink.LinkSetAlias(br, "vmrunner t NIC 1 run 0123456789abcdef"))
		b2, err := AdoptInterface("eth1", "vmbr1", "vmrunner t NIC 1")
		mustDo(t, err)
		if !b2.Replaced || !slices.Equal(addressingOf(t, "vmbr1"), before) {
			t.Errorf("after a killed run's bridge: replaced %v, bridge %q", b2.Replaced, addressingOf(t, "vmbr1"))
		}
		mustDo(t, b2.Release())
		if got := addressingOf(t, "eth1"); !slices.Equal(got, before) {
			t.Errorf("eth1 after the second Release has %q, want %q", got, before)
		}

		other := netlink.NewLinkAttrs()
		other.Name = "vmbr1" // someone else's bridge: no alias of a run
		mustDo(t, netlink.LinkAdd(&netlink.Bridge{LinkAttrs: other}))
		if _, err := AdoptInterface("eth1", "vmbr1", "vmrunner t NIC 1"); err == nil || !strings.Contains(err.Error(), ErrBridgeExists.Error()) {
			t.Errorf("a foreign vmbr1: %v", err)
		}
		if _, err := AdoptInterface("eth9", "vmbr9", "vmrunner t NIC 1"); err == nil || !strings.Contains(err.Error(), ErrNoLink.Error()) {
			t.Errorf("a missing interface: %v", err)
		}
		if got := addressingOf(t, "eth1"); !slices.Equal(got, before) {
			t.Errorf("eth1 after the refusals has %q", got)
		}
	}
}

// BenchmarkAdoptInterface: what container mode adds to a start and to
// the end of a run (an interface with one address and one route).
func BenchmarkAdoptInterface(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to make a network namespace")
	}
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		b.Fatal(err)
	}
	thisRun.once, thisRun.id, thisRun.err = sync.Once{}, "", nil
	b.Cleanup(func() { thisRun.once, thisRun.id, thisRun.err = sync.Once{}, "", nil })
	la := netlink.NewLinkAttrs()
	la.Name = "eth1"
	mustDo(b, netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth1p"}))
	eth1, _ := netlink.LinkByName("eth1")
	mustDo(b, netlink.LinkSetUp(eth1))
	addr, _ := netlink.ParseAddr("10.77.5.9/24")
	mustDo(b, netlink.AddrAdd(eth1, addr))
	_, dst, _ := net.ParseCIDR("10.99.0.0/16")
	mustDo(b, netlink.RouteAdd(&netlink.Route{LinkIndex: eth1.Attrs().Index, Dst: dst, Gw: net.ParseIP("10.77.5.1")}))
	for b.Loop() {
		br, err := AdoptInterface("eth1", "vmbr1", "vmrunner b NIC 1")
		if err != nil {
			b.Fatal(err)
		}
		if err := br.Release(); err != nil {
			b.Fatal(err)
		}
	}
}
