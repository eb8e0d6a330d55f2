package netcfg

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ContainerBridge is a bridge made inside the container around one of the
// container's own interfaces (NETWORK_MODE=container): the interface
// becomes its port, and its addresses and routes move to the bridge, so
// the container keeps its network while a guest's tap on the bridge joins
// the same one.
type ContainerBridge struct {
	Name      string // the bridge
	Interface string // the container's interface, its port
	Replaced  bool   // a bridge a killed run had left was undone first
	alias     string
}

// AdoptInterface makes bridge with alias, gives it iface's MTU and MAC (so
// the container's neighbours see no change), makes iface its port and
// moves iface's global addresses and its routes to it. When a step fails,
// what was done is undone.
//
// A bridge of that name that a killed run left (its alias says so, see
// ClaimLink) is undone first, which gives the interface its addresses
// back; any other link of that name is refused.
func AdoptInterface(iface, bridge, alias string) (*ContainerBridge, error) {
	ours, err := runAlias(alias)
	if err != nil {
		return nil, err
	}
	b := &ContainerBridge{Name: bridge, Interface: iface, alias: ours}
	if l, err := linkByName(bridge); err == nil {
		a := l.Attrs()
		switch ClaimLink(a.Alias, alias, a.OperState == netlink.OperUp, runAlive) {
		case ClaimStale:
			if err := (&ContainerBridge{Name: bridge, Interface: iface}).Release(); err != nil {
				return nil, fmt.Errorf("undoing bridge %s of a killed run: %w", bridge, err)
			}
			b.Replaced = true
		case ClaimInUse:
			return nil, fmt.Errorf("creating bridge: %w: %w", ErrBridgeExists, inUse("bridge", bridge, a.Alias))
		default:
			return nil, fmt.Errorf("creating bridge %s (alias %q): %w", bridge, a.Alias, ErrBridgeExists)
		}
	}
	port, err := linkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("container interface %w", err)
	}
	if m := port.Attrs().MasterIndex; m != 0 {
		name := fmt.Sprint(m)
		if l, err := netlink.LinkByIndex(m); err == nil {
			name = l.Attrs().Name
		}
		return nil, fmt.Errorf("%s is already a port of %s: %w", iface, name, ErrEnslaved)
	}
	pa := port.Attrs()
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = bridge, pa.MTU
	if len(pa.HardwareAddr) == 6 {
		la.HardwareAddr = pa.HardwareAddr
	}
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
		return nil, fmt.Errorf("creating bridge %s: %w", bridge, err)
	}
	if err := b.adopt(port); err != nil {
		return nil, errors.Join(err, b.Release())
	}
	return b, nil
}

// Errors of AdoptInterface that name a cause in the container's setup.
var (
	ErrEnslaved     = errors.New("already enslaved")                        // the interface is a bridge or bond port
	ErrBridgeExists = errors.New("exists and is not this VM's, left alone") // the bridge's name is taken
)

func (b *ContainerBridge) adopt(port netlink.Link) error {
	br, err := linkByName(b.Name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetAlias(br, b.alias); err != nil {
		return fmt.Errorf("naming %s: %w", b.Name, err)
	}
	// Listed before the addresses go: the kernel drops the routes that
	// needed them.
	addrs, routes, err := addressing(port)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetMaster(port, br); err != nil {
		return fmt.Errorf("making %s a port of %s: %w", b.Interface, b.Name, err)
	}
	for _, l := range []netlink.Link{port, br} {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("bringing %s up: %w", l.Attrs().Name, err)
		}
	}
	return move(addrs, routes, port, br)
}

// Release gives the interface its addresses and routes back, frees it
// and deletes the bridge; it is safe to call twice.
func (b *ContainerBridge) Release() error {
	br, err := linkByName(b.Name)
	if errors.Is(err, ErrNoLink) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	if port, err := linkByName(b.Interface); err == nil {
		addrs, routes, err := addressing(br)
		if err == nil {
			if port.Attrs().MasterIndex == br.Attrs().Index {
				err = netlink.LinkSetNoMaster(port)
			}
			if err == nil {
				err = move(addrs, routes, br, port)
			}
		}
		errs = append(errs, err)
	} else if !errors.Is(err, ErrNoLink) {
		errs = append(errs, err)
	}
	errs = append(errs, deleteLink(b.Name))
	return errors.Join(errs...)
}

// addressing lists the addresses (global scope: link-local ones belong to
// the link) and the routes (but the kernel's own, which come with the
// addresses) of link.
func addressing(link netlink.Link) ([]netlink.Addr, []netlink.Route, error) {
	all, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, nil, fmt.Errorf("listing %s's addresses: %w", link.Attrs().Name, err)
	}
	var addrs []netlink.Addr
	for _, a := range all {
		if a.Scope == unix.RT_SCOPE_UNIVERSE {
			addrs = append(addrs, a)
		}
	}
	var routes []netlink.Route
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlink.RouteListFiltered(family, &netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, nil, fmt.Errorf("listing %s's routes: %w", link.Attrs().Name, err)
		}
		for _, r := range rs {
			if r.Protocol != unix.RTPROT_KERNEL && !(r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast()) {
				routes = append(routes, r)
			}
		}
	}
	return addrs, routes, nil
}

// move takes addrs and routes from one link to the other: every address
// is deleted from from before any is added to to, and routes come last,
// as their gateways and sources need the addresses.
func move(addrs []netlink.Addr, routes []netlink.Route, from, to netlink.Link) error {
	for _, a := range addrs {
		if err := netlink.AddrDel(from, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("removing %s from %s: %w", a.IPNet, from.Attrs().Name, err)
		}
	}
	var errs []error
	for _, a := range addrs {
		na := &netlink.Addr{IPNet: a.IPNet, Broadcast: a.Broadcast, Peer: a.Peer}
		if err := netlink.AddrReplace(to, na); err != nil {
			errs = append(errs, fmt.Errorf("giving %s %s: %w", to.Attrs().Name, a.IPNet, err))
		}
	}
	for _, r := range routes {
		// Of the next hop's flags only onlink is the route's own: the
		// kernel reports linkdown and dead, and refuses them back.
		r.LinkIndex, r.Flags = to.Attrs().Index, r.Flags&unix.RTNH_F_ONLINK
		if err := netlink.RouteReplace(&r); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s on %s: %w", dst(r.Dst), r.Gw, to.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

func dst(n *net.IPNet) string {
	if n == nil {
		return "default"
	}
	return n.String()
}
