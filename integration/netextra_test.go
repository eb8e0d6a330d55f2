package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrunner/vmrunner/netcfg"
)

// The seed project's networking additions: the nat subnet
// (NETWORK_GUEST_IP), network boot (NETWORK_BOOT) and container mode.

// TestNetworkGuestIP: NETWORK_GUEST_IP=192.168.77.15 and
// NETWORK_GUEST_IP6 make the nat network 192.168.77.0/24 and fd00:77::/64:
// the guest's lease is that address, it reaches the host side at .2 and
// ::2, and PORT_FWD still reaches its web server.
func TestNetworkGuestIP(t *testing.T) {
	needGuest(t)
	needNetns(t)
	t.Parallel()
	host := newNetns(t, "gip")
	serveBlob(t, host, blobMiB) // the host side of NAT: 192.168.77.2 and fd00:77::2

	env := GuestEnv(t)
	web := FreePort(t)
	env["NETWORK_GUEST_IP"] = "192.168.77.15"
	env["NETWORK_GUEST_IP6"] = "fd00:77::15"
	env["PORT_FWD"] = fmt.Sprintf("%d:80", web)
	urls := []string{fmt.Sprintf("http://192.168.77.2:%d/blob", lanHTTP), fmt.Sprintf("http://[fd00:77::2]:%d/blob", lanHTTP)}
	env["KERNEL_CMDLINE"] += " vmtest.fetch=" + strings.Join(urls, ",")
	v := Start(t, env, host.Wrapper()...)
	v.WaitReady()

	nic := waitNIC(v, "eth0")
	if nic.IPv4 != "192.168.77.15/24" || !strings.HasPrefix(nic.IPv6, "fd00:77::") {
		t.Errorf("guest NIC %+v; want the lease 192.168.77.15/24 and an address in fd00:77::/64", nic)
	}
	out, err := host.Run("timeout", "20", "busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://127.0.0.1:%d/", web))
	if err != nil || !strings.Contains(out, "vmtest-guest ok") {
		t.Errorf("PORT_FWD to the guest at 192.168.77.15: %q, %v", out, err)
	}
	for i, what := range []string{"nat 192.168.77.0/24, guest fetches from the host side", "nat fd00:77::/64, guest fetches from the host side"} {
		n, d := guestFetch(t, v, urls[i])
		logRate(t, what, n, d)
	}
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 0 {
		t.Errorf("exit status %d after SIGTERM; want 0", code)
	}
}

// TestNetworkBootFirst: NETWORK_BOOT=1 puts the NIC before the installer
// CD in the boot order. The NIC's iPXE (IPXE_ENABLE=1: Debian's ROM named
// on the command line) asks DHCP for a boot file ("PXEClient"), which a
// dump of the NIC's frames shows before the CD's isolinux starts; QEMU's
// user network offers none, so the firmware goes on to the CD, which
// boots the test guest.
func TestNetworkBootFirst(t *testing.T) {
	needGuest(t)
	_, err := os.Stat("/usr/lib/ipxe/qemu/pxe-virtio.rom")
	need(t, "ipxe-qemu", err == nil)
	iso := bootISO(t)
	t.Parallel()
	env := GuestEnv(t)
	delete(env, "KERNEL")
	delete(env, "INITRD")
	delete(env, "KERNEL_CMDLINE")
	// QEMU runs as its own user (QEMU_USER): it must be able to write the dump.
	dumpDir, err := os.MkdirTemp("", "net-pcap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dumpDir) })
	if err := os.Chmod(dumpDir, 0o777); err != nil {
		t.Fatal(err)
	}
	pcap := filepath.Join(dumpDir, "net.pcap")
	env["BOOT_FROM"] = iso
	env["DISK_SIZE"] = "64M"
	env["NETWORK_BOOT"] = "1"
	env["IPXE_ENABLE"] = "1"
	// The firmware's log (SeaBIOS writes it to the debug port) says what
	// it booted in which order, should the test fail.
	fwLog := filepath.Join(dumpDir, "firmware.log")
	env["EXTRA_ARGS"] = "-object filter-dump,id=dump0,netdev=net1,file=" + pcap +
		" -chardev file,id=fwlog,path=" + fwLog + " -device isa-debugcon,iobase=0x402,chardev=fwlog"
	v := Start(t, env)

	v.WaitLine(`ISOLINUX \d`, 5*time.Minute)
	b, _ := os.ReadFile(pcap)
	if !bytes.Contains(b, []byte("PXEClient")) {
		log, _ := os.ReadFile(fwLog)
		t.Errorf("the CD booted before the NIC asked for a boot file (%d bytes dumped, no PXEClient); firmware log:\n%s", len(b), log)
	}
	if !strings.Contains(v.Stderr(), "IPXE_ENABLE=1 on NIC 1 in nat mode") {
		t.Errorf("no warning that QEMU's user network serves no boot file")
	}
	v.WaitReady()
	if nic := waitNIC(v, "eth0"); nic.IPv4 != "10.0.2.15/24" {
		t.Errorf("guest NIC %+v after the network boot gave up; want 10.0.2.15/24", nic)
	}
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 0 {
		t.Errorf("exit status %d after SIGTERM; want 0", code)
	}
}

// containerIf gives the namespace's interface eth1 (a veth to the LAN) an
// address and a route of its own, as a Docker or Multus network would.
func containerIf(ns *netns) {
	// With its broadcast address, as Docker gives it (an address without
	// one comes back with it: netlink adds the natural one).
	ns.IP("addr", "add", "10.77.5.9/24", "brd", "+", "dev", "eth1")
	ns.IP("route", "add", "10.99.0.0/16", "via", "10.77.5.1", "dev", "eth1")
}

// addressing is what `ip` shows of the addresses and routes on dev.
func addressing(ns *netns, dev string) string {
	return ns.IP("-o", "-4", "addr", "show", "dev", dev) + ns.IP("-4", "route", "show", "dev", dev)
}

// TestNetworkContainer: NETWORK_MODE=container in a namespace standing for
// the container, whose eth1 is a veth to a LAN with a DHCP server. eth1
// becomes a port of the bridge vmbr1 with the guest's tap; the guest
// leases an address from the LAN and the LAN reaches it; the container
// keeps its address (moved to the bridge) and reaches the LAN. After a
// stop eth1 has its address and route back and no bridge or tap remains.
// A killed vmrunner leaves the bridge: the next start undoes it.
func TestNetworkContainer(t *testing.T) {
	needGuest(t)
	needNetns(t)
	t.Parallel()
	ctr := newNetns(t, "ctr")
	l := newLAN(t, ctr, "eth1", "10.77.5", 1500, blobMiB)
	containerIf(ctr)
	before := addressing(ctr, "eth1")

	env := GuestEnv(t)
	env["NETWORK_MODE"] = "container"
	env["NETWORK_CONTAINER_INTERFACE"] = "eth1"
	blob := fmt.Sprintf("http://%s:%d/blob", l.Addr, lanHTTP)
	env["KERNEL_CMDLINE"] += fmt.Sprintf(" vmtest.slaac_wait=0 vmtest.fetch=%s vmtest.blob_mb=%d", blob, blobMiB)
	v := Start(t, env, ctr.Wrapper()...)
	v.WaitReady()

	ip := leased(t, waitNIC(v, "eth0"), "10.77.5.")
	if ip == "10.77.5.9" {
		t.Errorf("the guest has the container's own address")
	}
	ports := ctr.IP("-o", "link", "show", "master", "vmbr1")
	tap := netcfg.LinkName(netcfg.TapPrefix, keptMAC(t, v, 1))
	if !strings.Contains(ports, "eth1") || !strings.Contains(ports, tap) {
		t.Errorf("ports of vmbr1: %s; want eth1 and the tap %s", ports, tap)
	}
	if got := addressing(ctr, "vmbr1"); !strings.Contains(got, "10.77.5.9/24") || !strings.Contains(got, "10.99.0.0/16 via 10.77.5.1") {
		t.Errorf("vmbr1 has %q; want eth1's address and route", got)
	}
	if out, err := ctr.Run("busybox", "ping", "-c", "1", "-W", "5", l.Addr); err != nil {
		t.Errorf("the container lost the LAN: %v %s", err, out)
	}
	checkLANReaches(t, l, ip)
	measure(t, "container", v, l, blob, ip)

	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 0 {
		t.Errorf("exit status %d after SIGTERM; want 0", code)
	}
	checkRestored(t, ctr, before)

	// A killed vmrunner (QEMU dies with it) leaves the bridge with eth1's
	// address; the next start undoes it before making its own.
	v = Start(t, env, ctr.Wrapper()...)
	v.WaitLine(`^VMTEST`, 3*time.Minute)
	if err := syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	v.Wait(time.Minute)
	if got := addressing(ctr, "eth1"); strings.Contains(got, "10.77.5.9") {
		t.Fatalf("after a killed run eth1 still has its address: nothing to recover (%q)", got)
	}
	stub := stubEnv(t)
	stub["NETWORK_MODE"], stub["NETWORK_CONTAINER_INTERFACE"] = "container", "eth1"
	stub["QEMU_BINARY"] = stubQEMU(t, filepath.Join(t.TempDir(), "qemu-saw"), false)
	v = Start(t, stub, ctr.Wrapper()...)
	if code := v.Wait(time.Minute); code != 1 {
		t.Errorf("exit status %d with a failing QEMU; want 1", code)
	}
	if !strings.Contains(v.Stderr(), "undid bridge vmbr1 that an earlier, killed run left behind") {
		t.Errorf("no warning about the killed run's bridge:\n%s", v.Stderr())
	}
	checkRestored(t, ctr, before)
}

// checkRestored checks eth1 has its addressing back and nothing vmrunner
// made remains.
func checkRestored(t *testing.T, ns *netns, before string) {
	t.Helper()
	if after := addressing(ns, "eth1"); after != before {
		t.Errorf("eth1 after the VM:\n%s\nbefore:\n%s", after, before)
	}
	if out := ns.IP("-o", "link", "show", "dev", "eth1"); strings.Contains(out, "master") {
		t.Errorf("eth1 is still a port: %s", out)
	}
	for _, l := range ns.Links() {
		if l.Name == "vmbr1" {
			t.Errorf("bridge left behind: %s", l.Line)
		}
	}
	ns.assertClean()
}

// TestNetworkContainerFailures: each way container mode can fail exits 2
// naming the variable to fix, and leaves the container's interface as it
// was: address, route, no bridge, no tap.
func TestNetworkContainerFailures(t *testing.T) {
	needNetns(t)
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(*netns)
		env     map[string]string
		wrapper []string
		want    []string
	}{
		{"missing interface", nil, map[string]string{"NETWORK_CONTAINER_INTERFACE": "eth9"}, nil,
			[]string{`NETWORK_CONTAINER_INTERFACE="eth9"`, "no such network interface", "docker network connect"}},
		{"no CAP_NET_ADMIN", nil, map[string]string{"NETWORK_CONTAINER_INTERFACE": "eth1"}, []string{"setpriv", "--bounding-set=-net_admin"},
			[]string{`NETWORK_MODE="container"`, "operation not permitted", "--cap-add NET_ADMIN --device /dev/net/tun"}},
		{"bridge name taken", func(n *netns) { n.IP("link", "add", "vmbr1", "type", "bridge") },
			map[string]string{"NETWORK_CONTAINER_INTERFACE": "eth1"}, nil,
			[]string{`NETWORK_CONTAINER_BRIDGE="vmbr1"`, "not this VM's"}},
		{"interface already a port", func(n *netns) {
			n.IP("link", "add", "br7", "type", "bridge")
			n.IP("link", "set", "eth1", "master", "br7")
		}, map[string]string{"NETWORK_CONTAINER_INTERFACE": "eth1"}, nil,
			[]string{`NETWORK_CONTAINER_INTERFACE="eth1"`, "already a port of br7", "nomaster"}},
		{"late tap failure", func(n *netns) { // after the bridge was made
			n.IP("tuntap", "add", "dev", netcfg.LinkName(netcfg.TapPrefix, mustMAC(t, "52:54:00:aa:bb:05")), "mode", "tap")
		}, map[string]string{"NETWORK_CONTAINER_INTERFACE": "eth1", "NETWORK_MAC": "52:54:00:aa:bb:05"}, nil,
			[]string{`NETWORK_MAC="52:54:00:aa:bb:05"`, "ip link del vmt525400aabb05"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctr := newNetns(t, "ctrfail")
			ctr.IP("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
			ctr.IP("link", "set", "eth1", "up")
			ctr.IP("link", "set", "eth1p", "up")
			containerIf(ctr)
			if tt.setup != nil {
				tt.setup(ctr)
			}
			before, links := addressing(ctr, "eth1"), len(ctr.Links())
			env := stubEnv(t)
			env["NETWORK_MODE"] = "container"
			env["QEMU_BINARY"] = stubQEMU(t, filepath.Join(t.TempDir(), "qemu-saw"), false)
			for k, val := range tt.env {
				env[k] = val
			}
			v := Start(t, env, append(ctr.Wrapper(), tt.wrapper...)...)
			if code := v.Wait(time.Minute); code != 2 {
				t.Fatalf("exit status %d; want 2\n%s", code, v.Stderr())
			}
			for _, w := range tt.want {
				if !strings.Contains(v.Stderr(), w) {
					t.Errorf("message lacks %q:\n%s", w, v.Stderr())
				}
			}
			if after := addressing(ctr, "eth1"); after != before {
				t.Errorf("eth1 after the failure:\n%s\nbefore:\n%s", after, before)
			}
			if n := len(ctr.Links()); n != links {
				t.Errorf("%d links after the failure, %d before: %+v", n, links, ctr.Links())
			}
		})
	}
}
