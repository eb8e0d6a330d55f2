package netcfg

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// HasIPv6 reports whether /proc/net/if_inet6's content lists any address,
// the contract's test for turning IPv6 on in nat mode.
func HasIPv6(ifInet6 string) bool {
	return strings.TrimSpace(ifInet6) != ""
}

// HostHasIPv6 reads /proc/net/if_inet6 (absent when IPv6 is disabled).
func HostHasIPv6() bool {
	b, err := os.ReadFile("/proc/net/if_inet6")
	return err == nil && HasIPv6(string(b))
}

// ChooseMTU decides the MTU a NIC is given: an explicit value always; for
// NIC 1 the detected one when it is not Ethernet's 1500; otherwise none.
func ChooseMTU(configured, index, detected int) int {
	switch {
	case configured != 0:
		return configured
	case index == 1 && detected != 0 && detected != 1500:
		return detected
	}
	return 0
}

// DefaultRouteMTU returns the MTU of the interface that carries the
// default route, IPv4 first, then IPv6; 0 when there is none.
func DefaultRouteMTU() (int, error) {
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := listRoutes(family)
		if err != nil {
			return 0, fmt.Errorf("listing routes: %w", err)
		}
		for _, r := range routes {
			index := routeLink(r)
			if !isDefault(r) || index == 0 {
				continue
			}
			link, err := netlink.LinkByIndex(index)
			if err != nil {
				return 0, fmt.Errorf("default route's link %d: %w", index, err)
			}
			return link.Attrs().MTU, nil
		}
	}
	return 0, nil
}

// isDefault accepts both spellings of a default route: netlink before
// v1.3 left Dst nil, v1.3 reports 0.0.0.0/0 or ::/0.
func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0 && r.Dst.IP.IsUnspecified()
}

// routeLink is the interface a route leaves by; a multipath (ECMP) route
// has none of its own, so its first next hop's counts.
func routeLink(r netlink.Route) int {
	if r.LinkIndex == 0 && len(r.MultiPath) > 0 {
		return r.MultiPath[0].LinkIndex
	}
	return r.LinkIndex
}

// listRoutes retries a dump the kernel interrupted because the table
// changed under it.
func listRoutes(family int) ([]netlink.Route, error) {
	var err error
	for range 5 {
		var routes []netlink.Route
		routes, err = netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return routes, err
		}
	}
	return nil, err
}
