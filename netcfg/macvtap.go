package netcfg

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AddMacvtap creates macvtap name in bridge mode on parent with the
// guest's MAC (a macvtap only delivers frames for its own address), brings
// it up and opens its character device.
//
// A macvtap outlives a killed supervisor. A link with the same name, MAC
// and parent whose alias names this NIC and a run that is gone (see
// ClaimLink) is such a leftover, so it is deleted and made again rather
// than blocking every restart. One of a running vmrunner (another
// container on the same host network, with the same guest name) is left
// alone: the error wraps ErrLinkInUse.
func AddMacvtap(name, parent string, mac net.HardwareAddr, mtu int, alias string) (*Tap, error) {
	p, err := linkByName(parent)
	if err != nil {
		return nil, fmt.Errorf("parent %w", err)
	}
	ours, err := runAlias(alias)
	if err != nil {
		return nil, err
	}
	t := &Tap{Name: name, alias: ours}
	err = addMacvtap(name, p.Attrs().Index, mac, mtu)
	if errors.Is(err, unix.EEXIST) {
		switch old, claim := existingMacvtap(name, p.Attrs().Index, mac, alias); claim {
		case ClaimStale:
			if err := deleteLink(name); err != nil {
				return nil, err
			}
			t.Replaced = true
			err = addMacvtap(name, p.Attrs().Index, mac, mtu)
		case ClaimInUse:
			err = inUse("macvtap", name, old)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("creating macvtap %s on %s: %w", name, parent, err)
	}
	if err := setUp(t, 0, ours, 0); err != nil {
		t.Remove()
		return nil, err
	}
	if t.File, err = openMacvtap(name, t.Index); err != nil {
		t.Remove()
		return nil, err
	}
	return t, nil
}

// addMacvtap creates the link; its alias is set afterwards, as the kernel
// ignores IFLA_IFALIAS when it creates a link.
func addMacvtap(name string, parent int, mac net.HardwareAddr, mtu int) error {
	a := netlink.NewLinkAttrs() // not a zero LinkAttrs: that sends txqlen 0
	a.Name, a.ParentIndex, a.HardwareAddr, a.MTU = name, parent, mac, mtu
	return netlink.LinkAdd(&netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: a, Mode: netlink.MACVLAN_MODE_BRIDGE}})
}

// existingMacvtap looks at the link in the way of a new macvtap: only a
// macvtap on the same parent with the same MAC can be this NIC's.
func existingMacvtap(name string, parent int, mac net.HardwareAddr, base string) (string, Claim) {
	l, err := linkByName(name)
	if err != nil {
		return "", ClaimForeign
	}
	a := l.Attrs()
	if l.Type() != "macvtap" || a.ParentIndex != parent || !bytes.Equal(a.HardwareAddr, mac) {
		return a.Alias, ClaimForeign
	}
	return a.Alias, ClaimLink(a.Alias, base, a.Flags&net.FlagUp != 0, runAlive)
}

// openMacvtap opens the character device of macvtap name. The kernel names
// it /dev/tapN after the link's ifindex, which is only unique within one
// network namespace while /dev is shared by all of them: /dev/tapN may be
// absent (a container without -v /dev:/dev) or another namespace's device.
// So /dev/tapN is used only when it is this link's device; otherwise a
// private node is made from the number in sysfs, opened and unlinked at
// once, leaving nothing behind. Failing to make or open the node is a
// *DeviceError with the device's number: a container's device cgroup must
// allow the macvtap major, which is dynamic (--device-cgroup-rule).
func openMacvtap(name string, index int) (*os.File, error) {
	tap := fmt.Sprintf("tap%d", index)
	b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "macvtap", tap, "dev"))
	if err != nil {
		return nil, fmt.Errorf("reading %s's device number: %w", name, err)
	}
	dev, err := parseDevNum(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s's device number: %w", name, err)
	}
	node := filepath.Join("/dev", tap)
	var st unix.Stat_t
	if unix.Stat(node, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == dev {
		return openChar(node, DriverMacvtap, dev)
	}
	node = filepath.Join("/dev", "vmrunner-"+name)
	_ = os.Remove(node) // a killed run's
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(dev)); err != nil {
		return nil, &DeviceError{Op: OpMknod, Path: node, Driver: DriverMacvtap, Major: unix.Major(dev), Minor: unix.Minor(dev), Err: err}
	}
	defer os.Remove(node)
	return openChar(node, DriverMacvtap, dev)
}

// parseDevNum reads sysfs's "major:minor" line.
func parseDevNum(s string) (uint64, error) {
	var major, minor uint32
	if n, err := fmt.Sscanf(strings.TrimSpace(s), "%d:%d", &major, &minor); n != 2 || err != nil {
		return 0, fmt.Errorf("%q is not major:minor", strings.TrimSpace(s))
	}
	return unix.Mkdev(major, minor), nil
}
