package vm

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/netcfg"
	"github.com/vmrunner/vmrunner/qemu"
)

// HostLink is the host side of a bridge or direct NIC, as planned.
type HostLink struct {
	Name   string // tap (bridge and container mode) or macvtap (direct mode) to create
	Uplink string // the bridge, or the macvtap's parent NIC
	MTU    int    // the link's MTU; 0: the kernel's default
	Alias  string // shown by `ip link`; also marks a killed run's macvtap
	// Adopt is container mode's interface, which becomes a port of the
	// bridge Uplink that start-up makes for it.
	Adopt string
}

// Uplinks lists the host links the NICs name, for probing the facts.
func Uplinks(c *config.Config) []string {
	var names []string
	for _, n := range c.NICs {
		if u := uplink(n); u != "" {
			names = append(names, u)
		}
	}
	return names
}

func uplink(n config.NIC) string {
	switch n.Mode {
	case config.NetBridge:
		return n.Bridge
	case config.NetDirect:
		return n.DirectDev
	case config.NetContainer:
		return n.ContainerIf
	}
	return ""
}

// planHostLink decides the host link of a bridge or direct NIC: its name,
// and the MTUs of link and guest, which must fit the uplink. A missing
// uplink is a configuration error here already, so --dry-run reports it.
func (p *Plan) planHostLink(np *NICPlan, f Facts) error {
	up := uplink(np.NIC)
	if up == "" {
		return nil
	}
	bridge, container := np.Mode == config.NetBridge, np.Mode == config.NetContainer
	l, ok := f.Links[up]
	if !ok {
		return explain(*np, fmt.Errorf("%s: %w", up, netcfg.ErrNoLink))
	}
	if bridge && l.Kind != "bridge" {
		return explain(*np, fmt.Errorf("%s is a %s: %w", up, l.Kind, netcfg.ErrNotBridge))
	}
	// Container mode's bridge takes its interface's MTU.
	guest, link, clamped := netcfg.UplinkMTU(bridge || container, np.MTU, l.MTU)
	if clamped {
		want := np.MTU
		if want == 0 {
			want = netcfg.EthernetMTU
		}
		p.Warnings = append(p.Warnings, fmt.Sprintf("NIC %d: MTU %d is more than %s's MTU %d: the guest gets %d (set %sMTU to choose)",
			np.Index, want, up, l.MTU, guest, np.Prefix()))
	}
	np.MTU = guest
	prefix := netcfg.TapPrefix
	if np.Mode == config.NetDirect {
		prefix = netcfg.MacvtapPrefix
	}
	np.Link = &HostLink{
		Name:   netcfg.LinkName(prefix, np.MAC),
		Uplink: up,
		MTU:    link,
		Alias:  fmt.Sprintf("vmrunner %s NIC %d", p.Config.GuestName, np.Index),
	}
	if container {
		np.Link.Uplink, np.Link.Adopt = np.ContainerBridge, up
	}
	return nil
}

// network creates the host side of bridge and direct NICs; QEMU inherits
// their fds. Each link and file is registered for removal at the end of
// the run.
func (p *Plan) network(out *Run) error {
	return p.attachTaps(&out.Spec, &out.inherited, func(n NICPlan) (*os.File, *os.File, error) {
		if n.Link.Adopt != "" {
			b, err := netcfg.AdoptInterface(n.Link.Adopt, n.Link.Uplink, n.Link.Alias)
			if err != nil {
				return nil, nil, explain(n, err)
			}
			out.c.always("bridge "+b.Name, b.Release)
			if b.Replaced {
				out.Warnings = append(out.Warnings, fmt.Sprintf("NIC %d: undid bridge %s that an earlier, killed run left behind", n.Index, b.Name))
			}
		}
		t, err := addLink(n)
		if err != nil {
			return nil, nil, explain(n, err)
		}
		out.c.always("link "+t.Name, t.Remove)
		if t.Replaced {
			out.Warnings = append(out.Warnings, fmt.Sprintf("NIC %d: replaced macvtap %s that an earlier, killed run left behind", n.Index, t.Name))
		}
		if !n.Vhost {
			return t.File, nil, nil
		}
		v, err := netcfg.OpenVhostNet()
		if err != nil {
			return nil, nil, fmt.Errorf("NIC %d: %w", n.Index, err)
		}
		out.c.always(fmt.Sprintf("vhost-net of NIC %d", n.Index), v.Close)
		return t.File, v, nil
	})
}

// attachTaps opens each bridge and direct NIC's tap (and vhost-net) with
// open, in NIC order, and points the spec's netdev at the fds the files
// get. --dry-run numbers them the same way, with no files.
func (p *Plan) attachTaps(spec *qemu.Spec, in *inherited, open func(NICPlan) (tap, vhost *os.File, err error)) error {
	for i, n := range p.NICs {
		if n.Link == nil {
			continue
		}
		tap, vhost, err := open(n)
		if err != nil {
			return err
		}
		t := qemu.TapNet{FD: in.add(tap), VhostFD: -1}
		if n.Vhost {
			t.VhostFD = in.add(vhost)
		}
		spec.NICs[i].Backend = t
	}
	return nil
}

// firstFD is the number of QEMU's first inherited file.
const firstFD = 3

// inherited hands out QEMU's fd numbers as files are added: fd 3 (after
// stdin, stdout, stderr) for the first, then 4, …
type inherited struct{ files []*os.File }

func (in *inherited) add(f *os.File) int {
	in.files = append(in.files, f)
	return firstFD + len(in.files) - 1
}

func addLink(n NICPlan) (*netcfg.Tap, error) {
	l := n.Link
	if n.Mode != config.NetDirect {
		return netcfg.AddTap(l.Name, l.Uplink, l.MTU, l.Alias)
	}
	return netcfg.AddMacvtap(l.Name, l.Uplink, n.MAC, l.MTU, l.Alias)
}

// explain turns a failure to make a NIC's host link into what the user
// must do: a *config.Error (exit 2) naming the variable to fix, with the
// networking guide's advice, for every cause outside vmrunner. Missing
// privileges are answered with the smallest docker run flag that grants
// them; --privileged is only named as the blunt alternative.
func explain(n NICPlan, err error) error {
	p, bridge := n.Prefix(), n.Mode == config.NetBridge
	mac := n.MAC.String()
	name := ""
	if n.Link != nil {
		name = n.Link.Name
	}
	if n.Mode == config.NetContainer {
		if e := explainContainer(n, err); e != nil {
			return e
		}
		bridge = true // its tap fails as a bridge mode tap does
	}
	var dev *netcfg.DeviceError
	switch {
	case errors.Is(err, netcfg.ErrNoLink) && bridge:
		return &config.Error{Var: p + "BRIDGE", Value: n.Bridge, Err: err,
			Accepted: fmt.Sprintf("an existing Linux bridge; create it on the host: "+
				"ip link add name %[1]s type bridge && ip link set dev %[1]s up && ip link set dev eth0 master %[1]s "+
				"(eth0: the host NIC that joins the LAN), and run the container with --network host to see it", n.Bridge)}
	case errors.Is(err, netcfg.ErrNoLink):
		return &config.Error{Var: p + "DIRECT_DEV", Value: n.DirectDev, Err: err,
			Accepted: "an existing host NIC (see ip link); run the container with --network host so it sees the host's NICs"}
	case errors.Is(err, netcfg.ErrNotBridge):
		return &config.Error{Var: p + "BRIDGE", Value: n.Bridge, Err: err,
			Accepted: fmt.Sprintf("a Linux bridge (ip link add name br0 type bridge), or %sMODE=direct to put the guest on a NIC with a macvtap", p)}
	case errors.As(err, &dev):
		if advice := deviceAdvice(dev); advice != "" {
			return &config.Error{Var: p + "MODE", Value: string(n.Mode), Err: err, Accepted: advice}
		}
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return &config.Error{Var: p + "MODE", Value: string(n.Mode), Err: err, Accepted: netAdminAdvice(bridge)}
	case !bridge && errors.Is(err, unix.EBUSY):
		return &config.Error{Var: p + "DIRECT_DEV", Value: n.DirectDev, Err: err,
			Accepted: fmt.Sprintf("a NIC that takes another macvtap: if a second VM gets \"Device or resource busy\" on the same NIC, "+
				"enable promiscuous mode: ip link set dev %[1]s promisc on; a bridge or bond port cannot carry a macvtap "+
				"(use %[2]sMODE=bridge with its bridge instead)", n.DirectDev, p)}
	case !bridge && errors.Is(err, unix.EOPNOTSUPP):
		return &config.Error{Var: p + "MODE", Value: string(n.Mode), Err: err,
			Accepted: "bridge or nat, or load the macvtap and macvlan modules on the host: modprobe macvtap"}
	case errors.Is(err, unix.EADDRINUSE):
		return &config.Error{Var: p + "MAC", Value: mac, Err: err,
			Accepted: fmt.Sprintf("a MAC no other interface on %s uses (another VM has %s: set %sMAC or GUEST_NAME)", n.DirectDev, mac, p)}
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.EBUSY):
		return &config.Error{Var: p + "MAC", Value: mac, Err: err,
			Accepted: fmt.Sprintf("a MAC no other VM on this host uses: link %s is named after it (set %sMAC or GUEST_NAME, or remove a stale link: ip link del %s)", name, p, name)}
	}
	return fmt.Errorf("NIC %d (%s): %w", n.Index, n.Mode, err)
}

// explainContainer answers the failures particular to container mode;
// nil for the others.
func explainContainer(n NICPlan, err error) error {
	p := n.Prefix()
	switch {
	case errors.Is(err, netcfg.ErrNoLink):
		return &config.Error{Var: p + "CONTAINER_INTERFACE", Value: n.ContainerIf, Err: err,
			Accepted: "an interface of this container (ip -br link), e.g. eth1 of a second Docker network (docker network connect NET CONTAINER) or net1 of a Multus network"}
	case errors.Is(err, netcfg.ErrEnslaved):
		return &config.Error{Var: p + "CONTAINER_INTERFACE", Value: n.ContainerIf, Err: err,
			Accepted: fmt.Sprintf("an interface that is no bridge or bond port (ip link set dev %s nomaster), or %sMODE=bridge with its bridge", n.ContainerIf, p)}
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return &config.Error{Var: p + "MODE", Value: string(n.Mode), Err: err,
			Accepted: "nat, or give the container CAP_NET_ADMIN and the tun device: docker run --cap-add NET_ADMIN --device /dev/net/tun " +
				"(no --network host: the interface is the container's own; Kubernetes: capabilities add NET_ADMIN)" + blunt}
	case errors.Is(err, netcfg.ErrBridgeExists):
		return &config.Error{Var: p + "CONTAINER_BRIDGE", Value: n.ContainerBridge, Err: err,
			Accepted: "the name of no existing interface in the container: vmrunner makes this bridge (and removes it at the end)"}
	}
	return nil
}

// blunt is the alternative to the smallest flags, for hosts where it works.
const blunt = "; --privileged also works, but grants every capability and device"

// macvtapRule is the device-cgroup rule for macvtap devices as a shell
// expression the host evaluates: the major is dynamic.
const macvtapRule = `"c $(awk '$2=="macvtap"{print $1}' /proc/devices):* rwm"`

// netAdminAdvice answers EPERM from making or configuring a link: the
// container lacks CAP_NET_ADMIN.
func netAdminAdvice(bridge bool) string {
	if bridge {
		return "nat, or give the container CAP_NET_ADMIN and the host's network, where the bridge is: " +
			"docker run --cap-add NET_ADMIN --network host" + blunt
	}
	return "nat, or give the container CAP_NET_ADMIN and the host's network, where the NIC is, and let it open the macvtap's device: " +
		"docker run --cap-add NET_ADMIN --network host --device-cgroup-rule " + macvtapRule + blunt
}

// deviceAdvice answers a failure to make or open the tun device or a
// macvtap's device; "" when the cause is not the container's setup.
func deviceAdvice(d *netcfg.DeviceError) string {
	refused := errors.Is(d.Err, unix.EPERM) || errors.Is(d.Err, unix.EACCES)
	switch {
	case d.Driver == netcfg.DriverTun && d.Op == netcfg.OpMknod:
		// No node, and none could be made (no CAP_MKNOD, read-only /dev).
		return "nat, or give the container the tun device: docker run --device /dev/net/tun " +
			"(with --cap-add NET_ADMIN --network host)" + blunt
	case d.Driver == netcfg.DriverTun && refused:
		// The node is there, but the device cgroup refuses it.
		return "nat, or let the container use the tun device: docker run --device /dev/net/tun " +
			"(with --cap-add NET_ADMIN --network host)" + blunt
	case d.Driver == netcfg.DriverTun && (errors.Is(d.Err, unix.ENODEV) || errors.Is(d.Err, unix.ENXIO)):
		return "nat, or load the tun module on the host: modprobe tun"
	case d.Driver == netcfg.DriverMacvtap && d.Op == netcfg.OpMknod && refused:
		return fmt.Sprintf("nat or bridge, or let vmrunner make a node for the macvtap's device: keep CAP_MKNOD "+
			"(Docker grants it by default; --cap-add MKNOD after --cap-drop ALL), with --device-cgroup-rule 'c %d:* rwm' "+
			"(%[1]d: the macvtap major on this host)"+blunt, d.Major)
	case d.Driver == netcfg.DriverMacvtap && refused:
		// The device cgroup refuses the macvtap's major.
		return fmt.Sprintf("nat or bridge, or let the container open macvtap devices: docker run --device-cgroup-rule 'c %d:* rwm' "+
			"(%[1]d: the macvtap major on this host; the device appears only once the link is made, so --device cannot pass it, "+
			"and -v /dev:/dev does not help without --privileged)"+blunt, d.Major)
	}
	return ""
}
