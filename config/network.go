package config

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/caarlos0/env/v11"
)

// rawIPXE holds the seed project's iPXE switches, which apply to the boot NIC.
type rawIPXE struct {
	Enable  string `env:"IPXE_ENABLE" envDefault:"0" help:"1: the boot NIC (NETWORK_BOOT, else NIC 1) gets an iPXE option ROM on the command line and boots first, or where BOOT_ORDER says network"`
	ROMPath string `env:"IPXE_ROM_PATH" help:"with IPXE_ENABLE=1: the option ROM file (default: Debian's ipxe-qemu ROM of the NIC's model, efi-MODEL.rom, or pxe-MODEL.rom with BOOT_MODE=legacy)"`
}

// Prefix lengths a nat NIC's IPv4 subnet may have: a /29 is the smallest
// that holds the network, the host side (.2), DNS (.3), the guest and the
// broadcast address; below /8 QEMU's DHCP server makes no sense.
const (
	minNATPrefix = 8
	maxNATPrefix = 29
	natPrefix4   = 24 // NETWORK_GUEST_IP without a prefix
	natPrefix6   = 64 // SLAAC, which gives the guest its address, needs a /64
)

// loadNICAdditions reads the NIC variables that came with the seed
// project's Go rewrite: the nat subnet, network boot and container mode.
func loadNICAdditions(n *NIC, raw rawNIC) error {
	p := n.Prefix()
	var errs []error
	var err error
	if n.Boot, err = parseBool(p+"BOOT", raw.Boot); err != nil {
		errs = append(errs, err)
	}
	if n.Boot && n.Mode == NetNone {
		errs = append(errs, &Error{Var: p + "BOOT", Value: raw.Boot, Accepted: fmt.Sprintf("0 with %sMODE=none: the NIC does not exist", p)})
	}
	for _, v := range []struct {
		name, value string
		ip          *netip.Prefix
		parse       func(string, string) (netip.Prefix, error)
	}{{p + "GUEST_IP", raw.GuestIP, &n.GuestIP, ParseGuestIP}, {p + "GUEST_IP6", raw.GuestIP6, &n.GuestIP6, ParseGuestIP6}} {
		if strings.TrimSpace(v.value) == "" {
			continue
		}
		if n.Mode != NetNAT {
			errs = append(errs, &Error{Var: v.name, Value: v.value, Accepted: fmt.Sprintf(
				"only with %sMODE=nat: on a bridge, direct or container NIC the LAN's DHCP server gives the address (a static one: CLOUD_INIT_NETWORK_CONFIG)", p)})
			continue
		}
		if *v.ip, err = v.parse(v.name, v.value); err != nil {
			errs = append(errs, err)
		}
	}
	if n.Mode != NetContainer {
		for _, v := range [][2]string{{p + "CONTAINER_INTERFACE", raw.ContIf}, {p + "CONTAINER_BRIDGE", raw.ContBr}} {
			if v[1] != "" {
				errs = append(errs, &Error{Var: v[0], Value: v[1], Accepted: fmt.Sprintf("only together with %sMODE=container", p)})
			}
		}
		return errors.Join(errs...)
	}
	n.ContainerIf, n.ContainerBridge = raw.ContIf, raw.ContBr
	if n.ContainerBridge == "" {
		n.ContainerBridge = "vmbr" + strconv.Itoa(n.Index)
	}
	if !ifName.MatchString(n.ContainerIf) {
		errs = append(errs, &Error{Var: p + "CONTAINER_INTERFACE", Value: raw.ContIf,
			Accepted: "the name of the container's interface the guest takes over, e.g. eth1 (docker exec CONTAINER ip -br link lists them); required with " + p + "MODE=container"})
	}
	switch {
	case !ifName.MatchString(n.ContainerBridge):
		errs = append(errs, &Error{Var: p + "CONTAINER_BRIDGE", Value: raw.ContBr, Accepted: "a Linux interface name (1-15 of A-Z a-z 0-9 _ . -)"})
	case n.ContainerBridge == n.ContainerIf:
		errs = append(errs, &Error{Var: p + "CONTAINER_BRIDGE", Value: raw.ContBr, Accepted: "a name other than " + p + "CONTAINER_INTERFACE's: vmrunner makes this bridge"})
	}
	return errors.Join(errs...)
}

// ParseGuestIP reads NETWORK_GUEST_IP: an IPv4 address, on a /24 unless a
// prefix is given. The address must be one the guest can have beside the
// network's own: not the network or broadcast address, nor QEMU's host
// side (.2) or DNS server (.3).
func ParseGuestIP(name, v string) (netip.Prefix, error) {
	bad := func(why string) error {
		return &Error{Var: name, Value: v, Err: errors.New(why),
			Accepted: fmt.Sprintf("the guest's IPv4 address, e.g. 192.168.77.15 (a /24) or 192.168.77.15/%d (prefix %d-%d); not the network, broadcast, .2 (the host side) or .3 (DNS) address",
				natPrefix4, minNATPrefix, maxNATPrefix)}
	}
	p, err := parseAddrPrefix(v, natPrefix4)
	switch {
	case err != nil:
		return p, bad(err.Error())
	case !p.Addr().Is4():
		return p, bad("not an IPv4 address")
	case p.Bits() < minNATPrefix || p.Bits() > maxNATPrefix:
		return p, bad(fmt.Sprintf("prefix /%d", p.Bits()))
	case !usable(p.Addr()):
		return p, bad("not a unicast address a guest can have")
	}
	n := NATNetFor(p, netip.Prefix{})
	if a := p.Addr(); a == n.Net.Addr() || a == n.Host || a == n.DNS || a == lastAddr(n.Net) {
		return p, bad(fmt.Sprintf("%s is the network's own address in %s", a, n.Net))
	}
	return p, nil
}

// ParseGuestIP6 reads NETWORK_GUEST_IP6: an IPv6 address on a /64, the
// only length SLAAC takes. Its /64 is the prefix QEMU advertises; the guest
// forms its own address in it.
func ParseGuestIP6(name, v string) (netip.Prefix, error) {
	bad := func(why string) error {
		return &Error{Var: name, Value: v, Err: errors.New(why),
			Accepted: "an IPv6 address with prefix /64 (the default), e.g. fd00:77::15: its /64 becomes the NAT's IPv6 prefix (the guest takes its address there by SLAAC, which needs a /64); not ::, ::2 or ::3 of it"}
	}
	p, err := parseAddrPrefix(v, natPrefix6)
	switch {
	case err != nil:
		return p, bad(err.Error())
	case !p.Addr().Is6() || p.Addr().Is4In6():
		return p, bad("not an IPv6 address")
	case p.Bits() != natPrefix6:
		return p, bad(fmt.Sprintf("prefix /%d", p.Bits()))
	case !usable(p.Addr()):
		return p, bad("not a unicast address a guest can have")
	}
	n := NATNetFor(netip.Prefix{}, p)
	if a := p.Addr(); a == n.Net6.Addr() || a == n.Host6 || a == n.DNS6 {
		return p, bad(fmt.Sprintf("%s is the network's own address in %s", a, n.Net6))
	}
	return p, nil
}

func parseAddrPrefix(v string, bits int) (netip.Prefix, error) {
	v = strings.TrimSpace(v)
	if strings.Contains(v, ",") {
		return netip.Prefix{}, errors.New("one address: QEMU's user network has one guest address per NIC")
	}
	if strings.Contains(v, "/") {
		return netip.ParsePrefix(v)
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, bits), nil
}

func usable(a netip.Addr) bool {
	return a.IsGlobalUnicast() || a.IsPrivate()
}

// NATNet is a nat NIC's network as QEMU's user networking takes it.
type NATNet struct {
	Net         netip.Prefix // net=
	Host, DNS   netip.Addr   // host=, dns=: .2 and .3 of Net, as QEMU's defaults are
	Guest       netip.Addr   // dhcpstart=: the first (and, for one guest, only) lease
	Net6        netip.Prefix // ipv6-net=
	Host6, DNS6 netip.Addr   // ipv6-host=, ipv6-dns=: ::2 and ::3 of Net6
}

// NATNetFor derives the nat network of a guest address and an IPv6 one;
// an invalid prefix leaves its half zero.
func NATNetFor(guest, guest6 netip.Prefix) NATNet {
	var n NATNet
	if guest.IsValid() {
		n.Net = guest.Masked()
		n.Host, n.DNS, n.Guest = addrAdd(n.Net.Addr(), 2), addrAdd(n.Net.Addr(), 3), guest.Addr()
	}
	if guest6.IsValid() {
		n.Net6 = guest6.Masked()
		n.Host6, n.DNS6 = addrAdd(n.Net6.Addr(), 2), addrAdd(n.Net6.Addr(), 3)
	}
	return n
}

// addrAdd is a plus k, carrying across bytes.
func addrAdd(a netip.Addr, k uint) netip.Addr {
	b := a.AsSlice()
	for i := len(b) - 1; i >= 0 && k > 0; i-- {
		sum := uint(b[i]) + k
		b[i], k = byte(sum), sum>>8
	}
	out, _ := netip.AddrFromSlice(b)
	return out
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

// loadNetBoot reads IPXE_* and settles which NIC boots from the network:
// the one with NETWORK_BOOT=1, else NIC 1 for IPXE_ENABLE=1. With
// BOOT_ORDER set, it must name network for that NIC to boot at all.
func loadNetBoot(c *Config, environ map[string]string) error {
	var raw rawIPXE
	if err := env.ParseWithOptions(&raw, env.Options{Environment: environ}); err != nil {
		return fmt.Errorf("reading environment: %w", err)
	}
	var errs []error
	var err error
	if c.IPXE.Enabled, err = parseBool("IPXE_ENABLE", raw.Enable); err != nil {
		errs = append(errs, err)
	}
	c.IPXE.ROMPath = raw.ROMPath
	if raw.ROMPath != "" {
		if !c.IPXE.Enabled {
			errs = append(errs, &Error{Var: "IPXE_ROM_PATH", Value: raw.ROMPath, Accepted: "only together with IPXE_ENABLE=1"})
		} else if err := checkFile("IPXE_ROM_PATH", raw.ROMPath, "an existing, readable option ROM file, e.g. /usr/lib/ipxe/qemu/efi-virtio.rom (Debian's ipxe-qemu)"); err != nil {
			errs = append(errs, err)
		}
	}
	var boot []string
	for _, n := range c.NICs {
		if n.Boot {
			boot = append(boot, n.Prefix()+"BOOT")
		}
	}
	if len(boot) > 1 {
		errs = append(errs, &Error{Var: boot[1], Value: "1", Accepted: "1 on one NIC only (" + boot[0] + " is already 1): the firmware boots one NIC from the network"})
	}
	if c.IPXE.Enabled && len(boot) == 0 {
		if len(c.NICs) == 0 {
			errs = append(errs, &Error{Var: "IPXE_ENABLE", Value: raw.Enable, Accepted: "0 when there is no NIC (NETWORK_MODE=none)"})
		} else {
			c.NICs[0].Boot = true
			boot = append(boot, "IPXE_ENABLE")
		}
	}
	if order := c.Hardware.BootOrder; len(boot) > 0 && len(order) > 0 && !slices.Contains(order, BootNetwork) {
		errs = append(errs, &Error{Var: boot[0], Value: "1", Accepted: fmt.Sprintf(
			"0 with BOOT_ORDER=%s, which does not boot the network: add network to BOOT_ORDER (e.g. %s,network) or unset BOOT_ORDER, and the NIC boots first",
			strings.Join(order, ","), strings.Join(order, ","))})
	}
	return errors.Join(errs...)
}

// BootNIC is the NIC a network boot uses: the one with NETWORK_BOOT
// (or IPXE_ENABLE's), else NIC 1; nil without NICs.
func (c *Config) BootNIC() *NIC {
	for i := range c.NICs {
		if c.NICs[i].Boot {
			return &c.NICs[i]
		}
	}
	if len(c.NICs) > 0 {
		return &c.NICs[0]
	}
	return nil
}

// NetworkFirst says the boot NIC boots before the default order's devices:
// NETWORK_BOOT or IPXE_ENABLE without BOOT_ORDER.
func (c *Config) NetworkFirst() bool {
	return len(c.Hardware.BootOrder) == 0 && c.BootNIC() != nil && c.BootNIC().Boot
}

// nicEffective is --show-config's view of the seed project's NIC additions.
func (n NIC) nicEffective() [][2]string {
	p := n.Prefix()
	out := [][2]string{{p + "BOOT", map[bool]string{true: "1", false: "0"}[n.Boot]}}
	if n.GuestIP.IsValid() {
		out = append(out, [2]string{p + "GUEST_IP", n.GuestIP.String()})
	}
	if n.GuestIP6.IsValid() {
		out = append(out, [2]string{p + "GUEST_IP6", n.GuestIP6.String()})
	}
	if n.Mode == NetContainer {
		out = append(out, [2]string{p + "CONTAINER_INTERFACE", n.ContainerIf}, [2]string{p + "CONTAINER_BRIDGE", n.ContainerBridge})
	}
	return out
}

// ipxeEffective is --show-config's view of IPXE_*.
func (x IPXE) effective() [][2]string {
	rom := x.ROMPath
	if x.Enabled && rom == "" {
		rom = "(ipxe-qemu's for the model)"
	}
	return [][2]string{{"IPXE_ENABLE", map[bool]string{true: "1", false: "0"}[x.Enabled]}, {"IPXE_ROM_PATH", rom}}
}
