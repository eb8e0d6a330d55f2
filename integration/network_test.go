package integration

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrunner/vmrunner/netcfg"
)

// Every mode of the networking guide on real Linux networking: the VM's
// "host" is a network namespace (vmrunner runs in it through ip netns
// exec), the LAN another one with a DHCP server and a web server.

// blobMiB is the size of the file moved each way to measure throughput.
const blobMiB = 32

// TestNetworkBridge: the guide's bridge mode. The guest leases an address
// from the LAN's DHCP server, the LAN host reaches its web server, it
// reaches the LAN host's, and a graceful stop removes the tap.
func TestNetworkBridge(t *testing.T) {
	needGuest(t)
	needNetns(t)
	t.Parallel()
	host := newNetns(t, "br")
	host.IP("link", "add", "br0", "type", "bridge")
	host.IP("link", "set", "br0", "up")
	l := newLAN(t, host, "lan0", "10.77.1", 1500, blobMiB)
	host.IP("link", "set", "lan0", "master", "br0")

	env := GuestEnv(t)
	env["NETWORK_MODE"] = "bridge"
	env["NETWORK_BRIDGE"] = "br0"
	blob := fmt.Sprintf("http://%s:%d/blob", l.Addr, lanHTTP)
	env["KERNEL_CMDLINE"] += fmt.Sprintf(" vmtest.slaac_wait=0 vmtest.fetch=%s vmtest.blob_mb=%d", blob, blobMiB)
	v := Start(t, env, host.Wrapper()...)
	v.WaitReady()

	nic := waitNIC(v, "eth0")
	ip := leased(t, nic, "10.77.1.")
	taps := host.vmLinks()
	if len(taps) != 1 || !strings.Contains(taps[0].Line, "master br0") || taps[0].Name != netcfg.LinkName(netcfg.TapPrefix, keptMAC(t, v, 1)) {
		t.Errorf("host links %+v; want one tap on br0 named after the MAC", taps)
	}
	checkLANReaches(t, l, ip)
	measure(t, "bridge", v, l, blob, ip)

	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 0 {
		t.Errorf("exit status %d after SIGTERM; want 0", code)
	}
	host.assertClean()
}

// TestNetworkDirect: the guide's direct mode, a macvtap on a NIC whose
// other end is the LAN. QEMU is then killed: the supervisor still removes
// the macvtap, and its /dev/tapN goes with it.
func TestNetworkDirect(t *testing.T) {
	needGuest(t)
	needNetns(t)
	t.Parallel()
	host := newNetns(t, "dir")
	l := newLAN(t, host, "eth1", "10.77.2", 1500, blobMiB)

	env := GuestEnv(t)
	env["NETWORK_MODE"] = "direct"
	env["NETWORK_DIRECT_DEV"] = "eth1"
	blob := fmt.Sprintf("http://%s:%d/blob", l.Addr, lanHTTP)
	env["KERNEL_CMDLINE"] += fmt.Sprintf(" vmtest.slaac_wait=0 vmtest.fetch=%s vmtest.blob_mb=%d", blob, blobMiB)
	v := Start(t, env, host.Wrapper()...)
	v.WaitReady()

	nic := waitNIC(v, "eth0")
	ip := leased(t, nic, "10.77.2.")
	links := host.vmLinks()
	if len(links) != 1 || links[0].Parent != "eth1" || !strings.Contains(links[0].Line, "macvtap mode bridge") ||
		!strings.Contains(links[0].Line, nic.MAC) {
		t.Fatalf("host links %+v; want one macvtap on eth1 with the guest's MAC %s", links, nic.MAC)
	}
	node := fmt.Sprintf("/dev/tap%d", links[0].Index)
	checkLANReaches(t, l, ip)
	measure(t, "direct", v, l, blob, ip)

	if err := syscall.Kill(qemuPID(t, v), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := v.Wait(time.Minute); code != 1 {
		t.Errorf("exit status %d after QEMU was killed; want 1", code)
	}
	host.assertClean(node)
}

// TestNetworkBridgeAndNAT: the guide's bridge + NAT fallback. The bridge
// NIC is on the LAN; the NAT NIC carries PORT_FWD and has IPv6 (fec0::/64),
// over which the guest reaches the host side (slirp's fec0::2). A forced
// stop (exit 3) removes the tap too.
func TestNetworkBridgeAndNAT(t *testing.T) {
	needGuest(t)
	needNetns(t)
	t.Parallel()
	host := newNetns(t, "brnat")
	host.IP("link", "add", "br0", "type", "bridge")
	host.IP("link", "set", "br0", "up")
	l := newLAN(t, host, "lan0", "10.77.3", 1500, blobMiB)
	host.IP("link", "set", "lan0", "master", "br0")
	serveBlob(t, host, blobMiB) // the host side of NAT: 10.0.2.2 and fec0::2

	env := GuestEnv(t)
	web := FreePort(t)
	env["NETWORK_MODE"] = "bridge"
	env["NETWORK_BRIDGE"] = "br0"
	env["NETWORK2_MODE"] = "nat"
	env["PORT_FWD"] = fmt.Sprintf("%d:80", web)
	env["SHUTDOWN_TIMEOUT"] = "2"
	urls := []string{
		fmt.Sprintf("http://%s:%d/blob", l.Addr, lanHTTP),
		fmt.Sprintf("http://10.0.2.2:%d/blob", lanHTTP),
		fmt.Sprintf("http://[fec0::2]:%d/blob", lanHTTP),
	}
	env["KERNEL_CMDLINE"] += " vmtest.ignore_powerbutton=1 vmtest.fetch=" + strings.Join(urls, ",")
	v := Start(t, env, host.Wrapper()...)
	v.WaitReady()

	lanNIC, natNIC := waitNIC(v, "eth0"), waitNIC(v, "eth1")
	ip := leased(t, lanNIC, "10.77.3.")
	if natNIC.IPv4 != "10.0.2.15/24" || !strings.HasPrefix(natNIC.IPv6, "fec0::") {
		t.Errorf("NAT NIC %+v; want 10.0.2.15/24 and an address in fec0::/64", natNIC)
	}
	if lanNIC.MAC != keptMAC(t, v, 1).String() || natNIC.MAC != keptMAC(t, v, 2).String() {
		t.Errorf("guest NICs eth0 %s, eth1 %s: not NIC 1 and NIC 2 in order", lanNIC.MAC, natNIC.MAC)
	}
	checkLANReaches(t, l, ip)
	out, err := host.Run("timeout", "20", "busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://127.0.0.1:%d/", web))
	if err != nil || !strings.Contains(out, "vmtest-guest ok") {
		t.Errorf("PORT_FWD inside the host namespace: %q, %v", out, err)
	}
	for i, what := range []string{"bridge, guest fetches from the LAN host", "nat IPv4, guest fetches from the host", "nat IPv6, guest fetches from the host"} {
		n, d := guestFetch(t, v, urls[i])
		logRate(t, what, n, d)
	}

	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 3 {
		t.Errorf("exit status %d for a guest that ignores the power button; want 3", code)
	}
	host.assertClean()
}

// TestNetworkMTUAndIPv6Off: the default route leaves by a 9000-MTU link,
// so NIC 1 gets 9000; NETWORK2_MTU overrides NIC 2. IPv6 is disabled in
// the namespace, so /proc/net/if_inet6 is empty and NAT runs without it.
func TestNetworkMTUAndIPv6Off(t *testing.T) {
	needGuest(t)
	needNetns(t)
	t.Parallel()
	host := newNetns(t, "mtu")
	jumboUplink(host)
	host.Sysctl("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	if out, _ := host.Run("cat", "/proc/net/if_inet6"); strings.TrimSpace(out) != "" {
		t.Fatalf("/proc/net/if_inet6 with IPv6 disabled: %q", out)
	}

	env := GuestEnv(t)
	env["NETWORK2_MODE"] = "nat"
	env["NETWORK2_MTU"] = "1400"
	env["KERNEL_CMDLINE"] += " vmtest.slaac_wait=1"
	v := Start(t, env, host.Wrapper()...)
	v.WaitReady()

	for _, tc := range []struct{ nic, mtu string }{{"eth0", "9000"}, {"eth1", "1400"}} {
		nic := waitNIC(v, tc.nic)
		if nic.MTU != tc.mtu || nic.IPv6 != "" {
			t.Errorf("%s: %+v; want MTU %s and no IPv6", tc.nic, nic, tc.mtu)
		}
	}
	if log := v.Stderr(); !strings.Contains(log, "ipv6=off") || strings.Contains(log, "ipv6=on") {
		t.Errorf("QEMU's user networking should have ipv6=off on both NICs; log:\n%s", log)
	}
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 0 {
		t.Errorf("exit status %d; want 0", code)
	}
}

// TestNetworkDryRunMTUAndIPv6 pins the MTU and IPv6 decisions in the
// printed command line, without booting.
func TestNetworkDryRunMTUAndIPv6(t *testing.T) {
	needNetns(t)
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(*netns)
		env     map[string]string
		want    []string
		notWant []string
	}{
		{"Ethernet uplink: no host_mtu", ethernetUplink, nil,
			[]string{"ipv6=on"}, []string{"host_mtu="}},
		{"jumbo uplink", jumboUplink, nil,
			[]string{"host_mtu=9000"}, nil},
		{"NETWORK_MTU overrides", jumboUplink, map[string]string{"NETWORK_MTU": "1400"},
			[]string{"host_mtu=1400"}, []string{"host_mtu=9000"}},
		{"no default route: nothing detected", func(*netns) {}, nil,
			nil, []string{"host_mtu="}},
		{"bridge clamps the detected MTU", func(n *netns) {
			jumboUplink(n)
			n.IP("link", "add", "br0", "type", "bridge")
		}, map[string]string{"NETWORK_MODE": "bridge"},
			[]string{"tap,id=net1,fd=3", "host_mtu=1500"}, []string{"host_mtu=9000"}},
		{"IPv6 disabled", func(n *netns) {
			n.Sysctl("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		}, nil, []string{"ipv6=off"}, []string{"ipv6=on"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := newNetns(t, "dry")
			tt.setup(host)
			env := stubEnv(t)
			for k, v := range tt.env {
				env[k] = v
			}
			out, errOut, code := dryRun(host, env)
			if code != 0 {
				t.Fatalf("--dry-run exit %d: %s", code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("command line lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("command line has %q:\n%s", w, out)
				}
			}
			host.assertClean()
		})
	}
}

// TestNetworkHostLinksAndFDs runs four NICs in a mix (bridge, nat, direct,
// bridge) against a stand-in QEMU that records what it inherited: each
// bridge/direct NIC's fd must be its own link, in NIC order, and the bridge
// keeps its MTU. The supervisor is then killed: the taps vanish with the
// stand-in, the macvtap stays, and the next start replaces it; that run's
// QEMU fails (exit 1) and everything must be removed again.
func TestNetworkHostLinksAndFDs(t *testing.T) {
	needNetns(t)
	t.Parallel()
	host := newNetns(t, "fds")
	host.IP("link", "add", "br0", "type", "bridge")
	// A 9000 port makes the bridge's MTU 9000 by the kernel's own rule
	// (the smallest port's), which a smaller tap would lower.
	host.IP("link", "add", "j0", "mtu", "9000", "type", "veth", "peer", "name", "j1", "mtu", "9000")
	host.IP("link", "set", "j0", "master", "br0")
	host.IP("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	for _, l := range []string{"br0", "j0", "j1", "eth1", "eth1p"} {
		host.IP("link", "set", l, "up")
	}

	env := stubEnv(t)
	record := filepath.Join(t.TempDir(), "qemu-saw")
	env["QEMU_BINARY"] = stubQEMU(t, record, true)
	env["NETWORK_MODE"] = "bridge"
	env["NETWORK2_MODE"] = "nat"
	env["NETWORK3_MODE"] = "direct"
	env["NETWORK3_DIRECT_DEV"] = "eth1"
	env["NETWORK4_MODE"] = "bridge"
	env["NETWORK4_MTU"] = "1400"
	v := Start(t, env, host.Wrapper()...)
	saw := waitRecord(t, v, record)
	tap1 := netcfg.LinkName(netcfg.TapPrefix, keptMAC(t, v, 1))
	mac3 := keptMAC(t, v, 3)
	macvtap3 := netcfg.LinkName(netcfg.MacvtapPrefix, mac3)
	tap4 := netcfg.LinkName(netcfg.TapPrefix, keptMAC(t, v, 4))
	idx := regexp.MustCompile(`(?m)^link: (\d+): ` + macvtap3 + `@eth1: .*\bmtu 1500\b.*macvtap mode bridge`).FindSubmatch(saw)
	if idx == nil {
		t.Fatalf("no macvtap %s on eth1 while QEMU ran:\n%s", macvtap3, saw)
	}
	for _, want := range []string{
		// the netdevs, each its own, in NIC order, numbered from fd 3
		`-netdev tap,id=net1,fd=3 -device virtio-net-pci,netdev=net1,mac=[0-9a-f:]+ -netdev user,id=net2,\S+ -device \S+ ` +
			`-netdev tap,id=net3,fd=4 -device virtio-net-pci,netdev=net3,mac=` + mac3.String() + ` ` +
			`-netdev tap,id=net4,fd=5 -device virtio-net-pci,netdev=net4,mac=\S+,host_mtu=1400 `,
		// and each fd is its NIC's link
		`(?m)^fd3: /dev/net/tun\niff3: iff:\s+` + tap1 + `$`,
		`(?m)^fd4: /dev/(tap` + string(idx[1]) + `|vmrunner-` + macvtap3 + ` \(deleted\))\niff4: $`,
		`(?m)^fd5: /dev/net/tun\niff5: iff:\s+` + tap4 + `$`,
		`(?m)^fd6: $`,
		// taps are up and take the bridge's MTU, so the bridge keeps 9000
		`(?m)^link: \d+: ` + tap1 + `: <\S*\bUP\b\S*> mtu 9000 .*master br0 `,
		`(?m)^link: \d+: ` + tap4 + `: <\S*\bUP\b\S*> mtu 9000 .*master br0 `,
		`(?m)^link: \d+: br0: .*\bmtu 9000\b`,
	} {
		if !regexp.MustCompile(want).Match(saw) {
			t.Errorf("QEMU's view lacks %s:\n%s", want, saw)
		}
	}

	v.Signal(syscall.SIGKILL)
	v.Wait(time.Minute)
	var left []nsLink
	for range 50 { // the stand-in dies by its parent-death signal, then its fds close
		if left = host.vmLinks(); len(left) == 1 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) != 1 || left[0].Name != macvtap3 {
		t.Fatalf("after killing vmrunner: %+v; want only the macvtap %s left", left, macvtap3)
	}

	os.Remove(record)
	env["QEMU_BINARY"] = stubQEMU(t, record, false)
	v = Start(t, env, host.Wrapper()...)
	if code := v.Wait(time.Minute); code != 1 {
		t.Fatalf("exit status %d with a QEMU that fails; want 1\n%s", code, v.Stderr())
	}
	if !strings.Contains(v.Stderr(), "replaced macvtap "+macvtap3) {
		t.Errorf("no warning about the replaced macvtap:\n%s", v.Stderr())
	}
	saw = waitRecord(t, v, record)
	idx = regexp.MustCompile(`(?m)^link: (\d+): ` + macvtap3 + `@eth1: `).FindSubmatch(saw)
	if idx == nil || !regexp.MustCompile(`(?m)^fd4: /dev/(tap`+string(idx[1])+`|vmrunner-)`).Match(saw) {
		t.Errorf("second run's QEMU has no new macvtap on fd 4:\n%s", saw)
	}
	host.assertClean("/dev/tap" + string(idx[1]))
	if out := host.IP("-o", "link", "show", "br0"); !strings.Contains(out, "mtu 9000") {
		t.Errorf("bridge after the run: %s", out)
	}
}

// TestNetworkDirectWithoutHostDev: a container without -v /dev:/dev has
// its own /dev, where no /dev/tapN appears. vmrunner then opens the
// macvtap through a private node, which it deletes at once.
func TestNetworkDirectWithoutHostDev(t *testing.T) {
	needNetns(t)
	t.Parallel()
	host := newNetns(t, "nodev")
	host.IP("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	host.IP("link", "set", "eth1", "up")
	env := stubEnv(t)
	record := filepath.Join(t.TempDir(), "qemu-saw")
	env["QEMU_BINARY"] = stubQEMU(t, record, false)
	env["NETWORK_MODE"] = "direct"
	env["NETWORK_DIRECT_DEV"] = "eth1"
	// A container's /dev: a tmpfs with a few nodes (cf. Docker's defaults).
	container := `mount -t tmpfs tmpfs /dev && mkdir /dev/net && mknod /dev/net/tun c 10 200 && mknod /dev/null c 1 3 && ` +
		`"$0"; s=$?; ls /dev >` + record + `.dev-after; exit $s`
	v := Start(t, env, append(host.Wrapper(), "unshare", "-m", "sh", "-c", container)...)
	if code := v.Wait(time.Minute); code != 1 {
		t.Fatalf("exit status %d with a QEMU that fails; want 1\n%s", code, v.Stderr())
	}
	saw := waitRecord(t, v, record)
	macvtap := netcfg.LinkName(netcfg.MacvtapPrefix, keptMAC(t, v, 1))
	if !regexp.MustCompile(`(?m)^fd3: /dev/vmrunner-` + macvtap + ` \(deleted\)\n`).Match(saw) {
		t.Errorf("QEMU's fd 3 is not the private node of %s:\n%s", macvtap, saw)
	}
	after, err := os.ReadFile(record + ".dev-after")
	if err != nil || strings.Join(strings.Fields(string(after)), " ") != "net null" {
		t.Errorf("the container's /dev after the run: %q, %v; want only net and null", after, err)
	}
	host.assertClean()
}

// containerDev is a wrapper that runs vmrunner (through then, e.g.
// setpriv) in a private mount namespace whose /dev is a tmpfs with only
// /dev/null, as in a container without --device /dev/net/tun.
func containerDev(then ...string) []string {
	script := `mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3 && exec "$@"`
	// sh's "$@": then, and vmrunner, which Start appends.
	return append([]string{"unshare", "-m", "sh", "-c", script, "sh"}, then...)
}

// TestNetworkBridgeMakesTunAndAdvisesVhost: a container started with only
// CAP_NET_ADMIN has no /dev/net/tun; vmrunner makes it (10:200, 0666), as
// Docker's device cgroup allows the tun device. Its host has vhost-net
// (a /proc/misc that lists it) that the container lacks: the log says
// --device /dev/vhost-net would be faster, and the run goes on without it.
func TestNetworkBridgeMakesTunAndAdvisesVhost(t *testing.T) {
	needNetns(t)
	t.Parallel()
	host := newNetns(t, "tun")
	host.IP("link", "add", "br0", "type", "bridge")
	host.IP("link", "set", "br0", "up")
	env := stubEnv(t)
	record := filepath.Join(t.TempDir(), "qemu-saw")
	env["QEMU_BINARY"] = stubQEMU(t, record, false)
	env["NETWORK_MODE"] = "bridge"
	misc := filepath.Join(t.TempDir(), "misc")
	if err := os.WriteFile(misc, []byte("200 tun\n238 vhost-net\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	container := `mount --bind ` + misc + ` /proc/misc && mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3 && ` +
		`"$0"; s=$?; stat -c '%n %F %t:%T %a' /dev/net/tun >` + record + `.tun; exit $s`
	v := Start(t, env, append(host.Wrapper(), "unshare", "-m", "sh", "-c", container)...)
	if code := v.Wait(time.Minute); code != 1 {
		t.Fatalf("exit status %d with a QEMU that fails; want 1\n%s", code, v.Stderr())
	}
	saw := waitRecord(t, v, record)
	tap := netcfg.LinkName(netcfg.TapPrefix, keptMAC(t, v, 1))
	if !regexp.MustCompile(`(?m)^fd3: /dev/net/tun\niff3: iff:\s+` + tap + `$`).Match(saw) {
		t.Errorf("QEMU's fd 3 is not tap %s through the tun device:\n%s", tap, saw)
	}
	if !strings.Contains(string(saw), "-netdev tap,id=net1,fd=3 ") {
		t.Errorf("QEMU ran with vhost-net that does not open:\n%s", saw)
	}
	node, err := os.ReadFile(record + ".tun")
	if want := "/dev/net/tun character special file a:c8 666\n"; err != nil || string(node) != want {
		t.Errorf("the tun node vmrunner made: %q, %v; want %q", node, err, want)
	}
	if !strings.Contains(v.Stderr(), "docker run --device /dev/vhost-net would make networking faster") {
		t.Errorf("no advice to add --device /dev/vhost-net:\n%s", v.Stderr())
	}
	host.assertClean()
}

// waitRecord waits for the stand-in QEMU's record.
func waitRecord(t *testing.T, v *VM, record string) []byte {
	t.Helper()
	for range 100 {
		if saw, err := os.ReadFile(record); err == nil && bytes.Contains(saw, []byte("\ndone\n")) {
			return saw
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the stand-in QEMU recorded nothing\n%s", v.Stderr())
	return nil
}

// TestNetworkFailures: what the user must fix exits 2 with the guide's
// advice, and leaves no link behind, also when an earlier NIC's link was
// already made.
func TestNetworkFailures(t *testing.T) {
	needNetns(t)
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(*netns)
		env     map[string]string
		wrapper []string // after ip netns exec
		want    []string
	}{
		{"missing bridge", nil, map[string]string{"NETWORK_MODE": "bridge", "NETWORK_BRIDGE": "br7"}, nil,
			[]string{`NETWORK_BRIDGE="br7"`, "ip link add name br7 type bridge", "ip link set dev br7 up", "with --network host"}},
		{"missing parent NIC", nil, map[string]string{"NETWORK2_MODE": "direct", "NETWORK2_DIRECT_DEV": "eth9"}, nil,
			[]string{`NETWORK2_DIRECT_DEV="eth9"`, "no such network interface"}},
		{"busy macvtap after a tap was made", func(n *netns) {
			n.IP("link", "add", "br0", "type", "bridge")
			n.IP("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
			n.IP("link", "set", "eth1", "master", "br0")
		}, map[string]string{"NETWORK_MODE": "bridge", "NETWORK2_MODE": "direct", "NETWORK2_DIRECT_DEV": "eth1"}, nil,
			[]string{`NETWORK2_DIRECT_DEV="eth1"`, "device or resource busy", "ip link set dev eth1 promisc on"}},
		{"no CAP_NET_ADMIN", func(n *netns) {
			n.IP("link", "add", "br0", "type", "bridge")
		}, map[string]string{"NETWORK_MODE": "bridge"}, []string{"setpriv", "--bounding-set=-net_admin"},
			[]string{`NETWORK_MODE="bridge"`, "operation not permitted", "docker run --cap-add NET_ADMIN --network host;"}},
		{"no /dev/net/tun and no CAP_MKNOD", func(n *netns) {
			n.IP("link", "add", "br0", "type", "bridge")
		}, map[string]string{"NETWORK_MODE": "bridge"}, containerDev("setpriv", "--bounding-set=-mknod"),
			[]string{`NETWORK_MODE="bridge"`, "making device node /dev/net/tun", "operation not permitted", "docker run --device /dev/net/tun"}},
		{"link name taken by something else", func(n *netns) {
			n.IP("link", "add", "br0", "type", "bridge")
			n.IP("tuntap", "add", "dev", netcfg.LinkName(netcfg.TapPrefix, mustMAC(t, "52:54:00:aa:bb:01")), "mode", "tap")
		}, map[string]string{"NETWORK_MODE": "bridge", "NETWORK_MAC": "52:54:00:aa:bb:01"}, nil,
			[]string{`NETWORK_MAC="52:54:00:aa:bb:01"`, "ip link del vmt525400aabb01"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := newNetns(t, "fail")
			if tt.setup != nil {
				tt.setup(host)
			}
			before := host.vmLinks()
			env := stubEnv(t)
			env["QEMU_BINARY"] = stubQEMU(t, filepath.Join(t.TempDir(), "qemu-saw"), false)
			for k, v := range tt.env {
				env[k] = v
			}
			v := Start(t, env, append(host.Wrapper(), tt.wrapper...)...)
			if code := v.Wait(time.Minute); code != 2 {
				t.Fatalf("exit status %d; want 2\n%s", code, v.Stderr())
			}
			for _, w := range tt.want {
				if !strings.Contains(v.Stderr(), w) {
					t.Errorf("message lacks %q:\n%s", w, v.Stderr())
				}
			}
			if after := host.vmLinks(); len(after) != len(before) {
				t.Errorf("links before %+v, after %+v", before, after)
			}
		})
	}
}

// ethernetUplink and jumboUplink give the namespace a default route over
// a veth of MTU 1500 or 9000.
func ethernetUplink(n *netns) { uplink(n, 1500) }
func jumboUplink(n *netns)    { uplink(n, 9000) }

func uplink(n *netns, mtu int) {
	n.IP("link", "add", "up0", "mtu", fmt.Sprint(mtu), "type", "veth", "peer", "name", "up1", "mtu", fmt.Sprint(mtu))
	n.IP("link", "set", "up0", "up")
	n.IP("link", "set", "up1", "up")
	n.IP("addr", "add", "10.88.0.2/24", "dev", "up0")
	n.IP("route", "add", "default", "via", "10.88.0.1", "dev", "up0", "onlink")
}

// stubEnv is GuestEnv for runs that never boot a guest: the kernel and
// initrd only have to exist.
func stubEnv(t *testing.T) map[string]string {
	dir := t.TempDir()
	env := map[string]string{
		"ACCEL": "tcg", "BOOT_MODE": "legacy", "MEMORY": "256", "CPUS": "1",
		"DATA_DIR": t.TempDir(), "GUEST_NAME": "testvm", "PORT_FWD_ADDR": "127.0.0.1",
		"LOG_FORMAT": "json", "SSH_PORT": "2222", "PERSIST": "1", // the tests read mac-N after the end
	}
	for _, f := range []string{"KERNEL", "INITRD"} {
		env[f] = filepath.Join(dir, strings.ToLower(f))
		if err := os.WriteFile(env[f], nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// stubQEMU writes a stand-in QEMU that records its arguments, what its fds
// 3 to 6 are (and for a tap, which one), and the host's links; then it
// holds its fds (hold) or fails at once. It avoids $(…) and pipes, whose
// fds the shell would list as its own.
func stubQEMU(t *testing.T, record string, hold bool) string {
	end := "exit 1"
	if hold {
		end = "exec sleep 600"
	}
	script := `#!/bin/sh
{
	echo "args: $* "
	for fd in 3 4 5 6; do
		printf 'fd%s: ' $fd
		readlink /proc/$$/fd/$fd || echo
		printf 'iff%s: ' $fd
		grep '^iff:' /proc/$$/fdinfo/$fd 2>/dev/null || echo
	done
	ip -o -d link | sed 's/^/link: /'
	echo done
} >` + record + `
` + end + `
`
	path := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// dryRun runs vmrunner --dry-run inside ns.
func dryRun(ns *netns, env map[string]string) (stdout, stderr string, code int) {
	argv := append(ns.Wrapper(), binary, "--dry-run")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code == -1 {
		errOut.WriteString(err.Error())
	}
	return out.String(), errOut.String(), code
}

type guestNIC struct{ MAC, MTU, IPv4, IPv6 string }

// waitNIC returns what the guest reported about its NIC name.
func waitNIC(v *VM, name string) guestNIC {
	v.t.Helper()
	m := v.WaitLine(`^VMTEST nic name=`+name+` mac=(\S+) mtu=(\d+) ipv4=(\S*) ipv6=(\S*)`, time.Minute)
	return guestNIC{MAC: m[1], MTU: m[2], IPv4: m[3], IPv6: m[4]}
}

// leased checks that the NIC got its address from the LAN's DHCP range
// and returns the address.
func leased(t *testing.T, nic guestNIC, prefix string) string {
	t.Helper()
	ip, _, _ := strings.Cut(nic.IPv4, "/")
	if !strings.HasPrefix(ip, prefix) || !strings.HasSuffix(nic.IPv4, "/24") {
		t.Fatalf("guest NIC %+v; want a lease in %s0/24", nic, prefix)
	}
	return ip
}

// checkLANReaches fetches the guest's page from the LAN host.
func checkLANReaches(t *testing.T, l *lan, guestIP string) {
	t.Helper()
	body, _ := l.Get("http://"+guestIP+"/", time.Minute)
	if !strings.Contains(body, "vmtest-guest ok") {
		t.Errorf("the LAN host got %q from the guest", body)
	}
}

// measure moves blobMiB MiB each way between the LAN host and the guest.
func measure(t *testing.T, mode string, v *VM, l *lan, blob, guestIP string) {
	t.Helper()
	n, d := guestFetch(t, v, blob)
	logRate(t, mode+", guest fetches from the LAN host", n, d)
	body, d := l.Get("http://"+guestIP+"/blob", time.Minute)
	if len(body) != blobMiB<<20 {
		t.Errorf("the LAN host got %d bytes of the guest's blob; want %d", len(body), blobMiB<<20)
	}
	logRate(t, mode+", LAN host fetches from the guest", len(body), d)
}

// guestFetch returns the size and duration of the guest's fetch of url.
func guestFetch(t *testing.T, v *VM, url string) (int, time.Duration) {
	t.Helper()
	m := v.WaitLine(`^VMTEST fetch url=`+regexp.QuoteMeta(url)+` ok=(\w+) bytes=(\d+) csec=(\d+)`, time.Minute)
	var n, csec int
	fmt.Sscan(m[2], &n)
	fmt.Sscan(m[3], &csec)
	if m[1] != "yes" || n != blobMiB<<20 {
		t.Errorf("guest fetch of %s: ok=%s, %d bytes; want %d", url, m[1], n, blobMiB<<20)
	}
	return n, time.Duration(csec) * 10 * time.Millisecond
}

func logRate(t *testing.T, what string, n int, d time.Duration) {
	t.Helper()
	if d <= 0 {
		d = 10 * time.Millisecond // below the guest clock's resolution
	}
	t.Logf("throughput %s: %d MiB in %s = %.1f MiB/s", what, n>>20, d.Round(10*time.Millisecond), float64(n)/float64(1<<20)/d.Seconds())
}

func keptMAC(t *testing.T, v *VM, index int) net.HardwareAddr {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(v.StateDir(), fmt.Sprintf("mac-%d", index)))
	if err != nil {
		t.Fatal(err)
	}
	return mustMAC(t, strings.TrimSpace(string(b)))
}

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	mac, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return mac
}
