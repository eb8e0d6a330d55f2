package netcfg

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Tap is a tap or macvtap this process created, and the open file through
// which QEMU moves the guest's frames.
type Tap struct {
	Name     string
	Index    int
	File     *os.File
	Replaced bool   // a macvtap a killed run had left was deleted first
	alias    string // this run's alias of the link
}

// Remove closes the file and deletes the link; it is safe to call twice.
// A link of that name that is no longer this one (another run's, made
// after ours vanished) is left alone.
func (t *Tap) Remove() error {
	if t.File != nil {
		t.File.Close()
		t.File = nil
	}
	l, err := linkByName(t.Name)
	if errors.Is(err, ErrNoLink) {
		return nil
	}
	if err != nil {
		return err
	}
	if a := l.Attrs(); a.Alias != t.alias && (t.Index == 0 || a.Index != t.Index) {
		return nil
	}
	return deleteLink(t.Name)
}

const tunDevice = "/dev/net/tun"

// AddTap creates tap name, attaches it to bridge with the given MTU and
// alias, and brings it up. The tap is not persistent: it vanishes when its
// last fd closes, so even a killed supervisor (whose QEMU dies with it)
// leaves no tap behind.
//
// The tap is made with the TUNSETIFF ioctl rather than netlink's Tuntap,
// which formats ioctl errors into strings: the errno is what tells a
// missing CAP_NET_ADMIN (EPERM) from a name in use (EBUSY). A missing
// /dev/net/tun is made (see openTun); a failure to make or open it is a
// *DeviceError.
func AddTap(name, bridge string, mtu int, alias string) (*Tap, error) {
	br, err := linkByName(bridge)
	if err != nil {
		return nil, fmt.Errorf("bridge %w", err)
	}
	if br.Type() != "bridge" {
		return nil, fmt.Errorf("%s is a %s: %w", bridge, br.Type(), ErrNotBridge)
	}
	ours, err := runAlias(alias)
	if err != nil {
		return nil, err
	}
	// A tap vanishes with its last fd, so one of this name belongs to a
	// live process: refuse it, never share or delete it.
	if l, err := linkByName(name); err == nil {
		if ClaimLink(l.Attrs().Alias, alias, true, runAlive) == ClaimInUse {
			return nil, fmt.Errorf("creating tap: %w", inUse("tap", name, l.Attrs().Alias))
		}
		return nil, fmt.Errorf("creating tap %s: %w", name, unix.EEXIST)
	}
	f, err := openTun(tunDevice)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tap name %q: %w", name, err)
	}
	// VNET_HDR lets QEMU pass checksum and segmentation offloads through;
	// TUN_EXCL makes a tap that appeared meanwhile an error (EBUSY) rather
	// than one more queue of another process's link.
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_TUN_EXCL)
	if err := unix.IoctlIfreq(int(f.Fd()), unix.TUNSETIFF, ifr); err != nil {
		f.Close()
		return nil, fmt.Errorf("creating tap %s: %w", name, err)
	}
	t := &Tap{Name: name, File: f, alias: ours}
	if err := setUp(t, mtu, ours, br.Attrs().Index); err != nil {
		t.Remove()
		return nil, err
	}
	return t, nil
}

// setUp configures a new link: MTU, alias, bridge (when master > 0), up.
func setUp(t *Tap, mtu int, alias string, master int) error {
	l, err := linkByName(t.Name)
	if err != nil {
		return err
	}
	t.Index = l.Attrs().Index
	if mtu > 0 && l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("setting %s's MTU to %d: %w", t.Name, mtu, err)
		}
	}
	if alias != "" {
		if err := netlink.LinkSetAlias(l, alias); err != nil {
			return fmt.Errorf("naming %s: %w", t.Name, err)
		}
	}
	if master > 0 {
		if err := netlink.LinkSetMasterByIndex(l, master); err != nil {
			return fmt.Errorf("attaching %s to its bridge: %w", t.Name, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bringing %s up: %w", t.Name, err)
	}
	return nil
}

const vhostDevice = "/dev/vhost-net"

// OpenVhostNet opens /dev/vhost-net for one tap NIC.
func OpenVhostNet() (*os.File, error) {
	fd, err := unix.Open(vhostDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", vhostDevice, err)
	}
	return os.NewFile(uintptr(fd), vhostDevice), nil
}
