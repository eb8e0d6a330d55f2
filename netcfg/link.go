package netcfg

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// Link is what planning needs to know about a host link a NIC names.
type Link struct {
	Name string
	Kind string // netlink's type: "bridge", "veth", "device", …
	MTU  int
}

// ErrNoLink says a named host link does not exist.
var ErrNoLink = errors.New("no such network interface")

// ErrNotBridge says NETWORK_BRIDGE names a link that is not a bridge.
var ErrNotBridge = errors.New("not a Linux bridge")

// LookupLinks reads the named host links; one that does not exist is
// absent from the map, so planning can say so with the variable's name.
func LookupLinks(names []string) (map[string]Link, error) {
	out := map[string]Link{}
	for _, name := range names {
		l, err := linkByName(name)
		if errors.Is(err, ErrNoLink) {
			continue
		}
		if err != nil {
			return out, err
		}
		a := l.Attrs()
		out[name] = Link{Name: a.Name, Kind: l.Type(), MTU: a.MTU}
	}
	return out, nil
}

// Link name prefixes: a tap on a bridge, a macvtap on a NIC.
const (
	TapPrefix     = "vmt"
	MacvtapPrefix = "vmv"
)

// LinkName names the host link of a NIC after the NIC's MAC, which is
// unique on the LAN the link joins: two VMs (even in two containers on one
// host network, where GUEST_NAME defaults to the same hostname) only
// collide when their MACs would collide on the wire anyway, and a run
// finds the link a killed run left. Prefix and 12 hex digits fill
// IFNAMSIZ's 15 characters exactly.
func LinkName(prefix string, mac net.HardwareAddr) string {
	return prefix + hex.EncodeToString(mac)
}

// linkByName looks a link up, turning "not found" into ErrNoLink and
// retrying a dump the kernel interrupted (netlink falls back to dumping
// all links on kernels that cannot look up by name).
func linkByName(name string) (netlink.Link, error) {
	var err error
	for range 5 {
		var l netlink.Link
		l, err = netlink.LinkByName(name)
		var nf netlink.LinkNotFoundError
		switch {
		case errors.As(err, &nf):
			return nil, fmt.Errorf("%s: %w", name, ErrNoLink)
		case err == nil:
			return l, nil
		case !errors.Is(err, netlink.ErrDumpInterrupted):
			return nil, fmt.Errorf("looking up %s: %w", name, err)
		}
	}
	return nil, fmt.Errorf("looking up %s: %w", name, err)
}

// deleteLink removes the named link if it still exists.
func deleteLink(name string) error {
	l, err := linkByName(name)
	if errors.Is(err, ErrNoLink) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := netlink.LinkDel(l); err != nil {
		if _, gone := linkByName(name); errors.Is(gone, ErrNoLink) {
			return nil // a non-persistent tap vanished with its last fd
		}
		return fmt.Errorf("deleting %s: %w", name, err)
	}
	return nil
}
