package guestagent

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// Ping answers nil when the agent runs.
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, "guest-ping", nil, nil, 0)
}

// Shutdown modes of guest-shutdown.
const (
	PowerDown = "powerdown"
	Halt      = "halt"
	Reboot    = "reboot"
)

// shutdownWait is how long Shutdown waits for an error reply: the agent
// answers guest-shutdown only when it fails.
const shutdownWait = 2 * time.Second

// Shutdown asks the guest's OS to power off (or halt, reboot). nil means
// the agent took the request, not that the guest is off: watch QEMU.
func (c *Client) Shutdown(ctx context.Context, mode string) error {
	switch mode {
	case PowerDown, Halt, Reboot:
	default:
		return fmt.Errorf("guest-shutdown: mode %q is not powerdown, halt or reboot", mode)
	}
	return c.send(ctx, "guest-shutdown", map[string]string{"mode": mode}, shutdownWait)
}

// Interface is one guest network interface.
type Interface struct {
	Name      string   `json:"name"`
	MAC       string   `json:"hardware-address,omitempty"`
	Addresses []IPAddr `json:"ip-addresses,omitempty"`
}

// IPAddr is one address of an Interface.
type IPAddr struct {
	Type    string `json:"ip-address-type"` // ipv4 or ipv6
	Address string `json:"ip-address"`
	Prefix  int    `json:"prefix"`
}

func (a IPAddr) String() string { return fmt.Sprintf("%s/%d", a.Address, a.Prefix) }

// Interfaces lists the guest's network interfaces and their addresses.
func (c *Client) Interfaces(ctx context.Context) ([]Interface, error) {
	var ifs []Interface
	if err := c.call(ctx, "guest-network-get-interfaces", nil, &ifs, 0); err != nil {
		return nil, err
	}
	for i := range ifs {
		ifs[i].Name, ifs[i].MAC = clean(ifs[i].Name), clean(ifs[i].MAC)
		for j := range ifs[i].Addresses {
			a := &ifs[i].Addresses[j]
			a.Type, a.Address = clean(a.Type), clean(a.Address)
		}
	}
	return ifs, nil
}

// OSInfo is what guest-get-osinfo reports (from the guest's os-release
// and uname).
type OSInfo struct {
	ID            string `json:"id,omitempty"`
	Name          string `json:"name,omitempty"`
	PrettyName    string `json:"pretty-name,omitempty"`
	Version       string `json:"version,omitempty"`
	VersionID     string `json:"version-id,omitempty"`
	KernelRelease string `json:"kernel-release,omitempty"`
	Machine       string `json:"machine,omitempty"`
}

// OSInfo asks the guest which OS it runs.
func (c *Client) OSInfo(ctx context.Context) (OSInfo, error) {
	var o OSInfo
	if err := c.call(ctx, "guest-get-osinfo", nil, &o, 0); err != nil {
		return OSInfo{}, err
	}
	for _, s := range []*string{&o.ID, &o.Name, &o.PrettyName, &o.Version, &o.VersionID, &o.KernelRelease, &o.Machine} {
		*s = clean(*s)
	}
	return o, nil
}

// HostName is the guest's host name.
func (c *Client) HostName(ctx context.Context) (string, error) {
	var h struct {
		Name string `json:"host-name"`
	}
	if err := c.call(ctx, "guest-get-host-name", nil, &h, 0); err != nil {
		return "", err
	}
	return clean(h.Name), nil
}

// maxField caps a string the guest reports before anyone prints it.
const maxField = 256

// clean makes a guest-supplied string safe to show on a terminal or in a
// log: no control characters (escape sequences), bounded length.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, s)
	if len(s) > maxField {
		s = strings.ToValidUTF8(s[:maxField], "")
	}
	return s
}
