package vm

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/netcfg"
	"github.com/vmrunner/vmrunner/qemu"
)

func netConfig(nics ...config.NIC) *config.Config {
	for i := range nics {
		nics[i].Index = i + 1
		if nics[i].Model == "" {
			nics[i].Model = "virtio-net-pci"
		}
	}
	return &config.Config{
		GuestName: "testvm", DataDir: "/tmp/d", BootMode: config.BootLegacy, Accel: config.AccelTCG,
		CPUModel: "max", Machine: "q35", MemoryMiB: 512, CPUs: 1,
		NICs: nics, SSHPort: 2222, PortFwdAddr: "127.0.0.1",
	}
}

var (
	br0  = netcfg.Link{Name: "br0", Kind: "bridge", MTU: 1500}
	eth1 = netcfg.Link{Name: "eth1", Kind: "device", MTU: 1500}
)

func TestPlanNumbersTapFDsInNICOrder(t *testing.T) {
	c := netConfig(
		config.NIC{Mode: config.NetBridge, Bridge: "br0"},
		config.NIC{Mode: config.NetNAT},
		config.NIC{Mode: config.NetDirect, DirectDev: "eth1"},
		config.NIC{Mode: config.NetBridge, Bridge: "br0"},
	)
	links := map[string]netcfg.Link{"br0": br0, "eth1": eth1}
	for _, vhost := range []bool{false, true} {
		p, err := MakePlan(c, Facts{Links: links, VhostNet: vhost})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"tap,id=net1,fd=3", "user,id=net2", "tap,id=net3,fd=4", "tap,id=net4,fd=5"}
		if vhost {
			want = []string{"tap,id=net1,fd=3,vhost=on,vhostfd=4", "user,id=net2", "tap,id=net3,fd=5,vhost=on,vhostfd=6", "tap,id=net4,fd=7,vhost=on,vhostfd=8"}
		}
		var got []string
		spec, _, err := p.DryRunSpec()
		if err != nil {
			t.Fatal(err)
		}
		args := qemu.Args(spec)
		for i, a := range args {
			if a == "-netdev" {
				got = append(got, strings.SplitN(args[i+1], ",ipv", 2)[0])
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("vhost=%v: netdevs %q; want %q", vhost, got, want)
		}
		names := []string{p.NICs[0].Link.Name, p.NICs[2].Link.Name, p.NICs[3].Link.Name}
		if p.NICs[1].Link != nil || !strings.HasPrefix(names[0], "vmt") || !strings.HasPrefix(names[1], "vmv") || names[0] == names[2] {
			t.Errorf("host links %q (NIC 2: %v)", names, p.NICs[1].Link)
		}
		if p.NICs[2].Link.Uplink != "eth1" || p.NICs[2].Link.Alias != "vmrunner testvm NIC 3" {
			t.Errorf("NIC 3's link: %+v", p.NICs[2].Link)
		}
	}
}

func TestPlanHostLinkMTU(t *testing.T) {
	jumbo := netcfg.Link{Name: "br9", Kind: "bridge", MTU: 9000}
	tests := []struct {
		name      string
		nic       config.NIC
		detected  int
		hostMTU   int // host_mtu in -device; 0: none
		linkMTU   int
		wantWarn  string
		linksFrom map[string]netcfg.Link
	}{
		{"1500 bridge, 1500 uplink", config.NIC{Mode: config.NetBridge, Bridge: "br0"}, 1500, 0, 1500, "", nil},
		{"detected jumbo clamped to the bridge", config.NIC{Mode: config.NetBridge, Bridge: "br0"}, 9000, 1500, 1500, "MTU 9000 is more than br0's MTU 1500", nil},
		{"override below the bridge", config.NIC{Mode: config.NetBridge, Bridge: "br0", MTU: 1400}, 0, 1400, 1500, "", nil},
		{"jumbo bridge, jumbo guest", config.NIC{Mode: config.NetBridge, Bridge: "br9"}, 9000, 9000, 9000, "", map[string]netcfg.Link{"br9": jumbo}},
		{"jumbo bridge, Ethernet guest", config.NIC{Mode: config.NetBridge, Bridge: "br9"}, 0, 0, 9000, "", map[string]netcfg.Link{"br9": jumbo}},
		{"direct override", config.NIC{Mode: config.NetDirect, DirectDev: "eth1", MTU: 1400}, 0, 1400, 1400, "", nil},
		{"direct clamped", config.NIC{Mode: config.NetDirect, DirectDev: "eth1", MTU: 9000}, 0, 1500, 1500, "MTU 9000 is more than eth1's MTU 1500", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links := tt.linksFrom
			if links == nil {
				links = map[string]netcfg.Link{"br0": br0, "eth1": eth1}
			}
			p, err := MakePlan(netConfig(tt.nic), Facts{Links: links, DefaultMTU: tt.detected})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Spec.NICs[0].MTU; got != tt.hostMTU {
				t.Errorf("guest MTU %d; want %d", got, tt.hostMTU)
			}
			if got := p.NICs[0].Link.MTU; got != tt.linkMTU {
				t.Errorf("link MTU %d; want %d", got, tt.linkMTU)
			}
			warns := strings.Join(p.Warnings, "\n")
			if (tt.wantWarn == "") != (warns == "") || !strings.Contains(warns, tt.wantWarn) {
				t.Errorf("warnings %q; want %q", warns, tt.wantWarn)
			}
		})
	}
}

func TestPlanRefusesMissingUplinks(t *testing.T) {
	tests := []struct {
		name    string
		nics    []config.NIC
		links   map[string]netcfg.Link
		wantVar string
		advice  string
	}{
		{"missing bridge", []config.NIC{{Mode: config.NetBridge, Bridge: "br7"}}, nil,
			"NETWORK_BRIDGE", "ip link add name br7 type bridge"},
		{"not a bridge", []config.NIC{{Mode: config.NetBridge, Bridge: "eth1"}}, map[string]netcfg.Link{"eth1": eth1},
			"NETWORK_BRIDGE", "not a Linux bridge"},
		{"missing parent on NIC 2", []config.NIC{{Mode: config.NetNAT}, {Mode: config.NetDirect, DirectDev: "eth9"}}, nil,
			"NETWORK2_DIRECT_DEV", "run the container with --network host so it sees the host's NICs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := MakePlan(netConfig(tt.nics...), Facts{Links: tt.links})
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != tt.wantVar || !strings.Contains(err.Error(), tt.advice) {
				t.Errorf("MakePlan: %v; want a config error on %s saying %q", err, tt.wantVar, tt.advice)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	bridge := NICPlan{NIC: config.NIC{Index: 1, Mode: config.NetBridge, Bridge: "br0"}, MAC: mac, Link: &HostLink{Name: "vmt525400123456"}}
	direct := NICPlan{NIC: config.NIC{Index: 2, Mode: config.NetDirect, DirectDev: "eth1"}, MAC: mac, Link: &HostLink{Name: "vmv525400123456"}}
	wrap := func(e error) error { return fmt.Errorf("creating: %w", e) }
	tests := []struct {
		name    string
		nic     NICPlan
		err     error
		wantVar string // "": not a configuration error
		advice  string
	}{
		{"no CAP_NET_ADMIN for a tap", bridge, wrap(syscall.EPERM), "NETWORK_MODE", "docker run --cap-add NET_ADMIN --network host;"},
		{"no CAP_NET_ADMIN for a macvtap", direct, wrap(syscall.EPERM), "NETWORK2_MODE",
			`docker run --cap-add NET_ADMIN --network host --device-cgroup-rule "c $(awk '$2=="macvtap"{print $1}' /proc/devices):* rwm"`},
		{"EACCES configuring a link", bridge, wrap(syscall.EACCES), "NETWORK_MODE", "--cap-add NET_ADMIN"},
		{"no /dev/net/tun and no CAP_MKNOD", bridge, wrap(tunErr(netcfg.OpMknod, syscall.EPERM)), "NETWORK_MODE", "docker run --device /dev/net/tun"},
		{"no /dev/net/tun on a read-only /dev", bridge, wrap(tunErr(netcfg.OpMknod, syscall.EROFS)), "NETWORK_MODE", "docker run --device /dev/net/tun"},
		{"device cgroup refuses the tun device", bridge, wrap(tunErr(netcfg.OpOpen, syscall.EPERM)), "NETWORK_MODE", "docker run --device /dev/net/tun"},
		{"no tun driver", bridge, wrap(tunErr(netcfg.OpOpen, syscall.ENODEV)), "NETWORK_MODE", "modprobe tun"},
		{"tun fails otherwise", bridge, wrap(tunErr(netcfg.OpOpen, syscall.EIO)), "", "NIC 1 (bridge)"},
		{"device cgroup refuses the macvtap", direct, wrap(macvtapErr(netcfg.OpOpen, syscall.EPERM)), "NETWORK2_MODE",
			"docker run --device-cgroup-rule 'c 246:* rwm'"},
		{"-v /dev:/dev is no way out", direct, wrap(macvtapErr(netcfg.OpOpen, syscall.EPERM)), "NETWORK2_MODE",
			"-v /dev:/dev does not help without --privileged"},
		{"no CAP_MKNOD for the macvtap's node", direct, wrap(macvtapErr(netcfg.OpMknod, syscall.EPERM)), "NETWORK2_MODE",
			"--cap-add MKNOD after --cap-drop ALL), with --device-cgroup-rule 'c 246:* rwm'"},
		{"macvtap device fails otherwise", direct, wrap(macvtapErr(netcfg.OpOpen, syscall.ENXIO)), "", "NIC 2 (direct)"},
		{"bridge vanished", bridge, wrap(netcfg.ErrNoLink), "NETWORK_BRIDGE", "ip link set dev br0 up"},
		{"parent vanished", direct, wrap(netcfg.ErrNoLink), "NETWORK2_DIRECT_DEV", "existing host NIC"},
		{"busy parent", direct, wrap(syscall.EBUSY), "NETWORK2_DIRECT_DEV", "ip link set dev eth1 promisc on"},
		{"no macvtap module", direct, wrap(syscall.EOPNOTSUPP), "NETWORK2_MODE", "modprobe macvtap"},
		{"MAC in use on the parent", direct, wrap(syscall.EADDRINUSE), "NETWORK2_MAC", "another VM has 52:54:00:12:34:56"},
		{"tap name taken", bridge, wrap(syscall.EEXIST), "NETWORK_MAC", "ip link del vmt525400123456"},
		{"tap busy", bridge, wrap(syscall.EBUSY), "NETWORK_MAC", "set NETWORK_MAC or GUEST_NAME"},
		{"anything else is a fault", bridge, wrap(syscall.EIO), "", "NIC 1 (bridge)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := explain(tt.nic, tt.err)
			var ce *config.Error
			isConfig := errors.As(err, &ce)
			if isConfig != (tt.wantVar != "") || (isConfig && ce.Var != tt.wantVar) || !strings.Contains(err.Error(), tt.advice) {
				t.Errorf("explain: %v; want var %q and %q", err, tt.wantVar, tt.advice)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("explain lost the cause %v", tt.err)
			}
			// --privileged is only ever the blunt alternative, never the advice.
			if msg := err.Error(); strings.Contains(msg, "--privileged") &&
				strings.Count(msg, "--privileged") != strings.Count(msg, "--privileged also works")+strings.Count(msg, "without --privileged") {
				t.Errorf("explain advises --privileged: %s", msg)
			}
		})
	}
}

func tunErr(op string, errno syscall.Errno) error {
	return &netcfg.DeviceError{Op: op, Path: "/dev/net/tun", Driver: netcfg.DriverTun, Major: 10, Minor: 200, Err: errno}
}

func macvtapErr(op string, errno syscall.Errno) error {
	return &netcfg.DeviceError{Op: op, Path: "/dev/vmrunner-vmv525400123456", Driver: netcfg.DriverMacvtap, Major: 246, Minor: 3, Err: errno}
}

// TestVhostAdviceIsAPlanWarning: the one vhost-net probe's advice becomes
// a warning of a plan with a tap NIC that goes without vhost-net, once.
func TestVhostAdviceIsAPlanWarning(t *testing.T) {
	f := testFacts()
	f.VhostAdvice = "docker run --device /dev/vhost-net would make networking faster"
	p := plan(t, map[string]string{"DATA_DIR": "/data", "NETWORK_MODE": "bridge", "NETWORK2_MODE": "bridge"}, f)
	if n := strings.Count(strings.Join(p.Warnings, "\n"), f.VhostAdvice); n != 1 {
		t.Errorf("warnings %q carry the advice %d times, want once", p.Warnings, n)
	}
	p = plan(t, map[string]string{"DATA_DIR": "/data"}, f)
	if slices.Contains(p.Warnings, f.VhostAdvice) {
		t.Errorf("a nat-only plan warns about vhost-net: %q", p.Warnings)
	}
}
