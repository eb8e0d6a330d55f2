package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/caarlos0/env/v11"
)

// rawIPMI holds the IPMI BMC's variables, the seed project's names.
type rawIPMI struct {
	Enable   string `env:"IPMI_ENABLE" envDefault:"0" help:"1: serve an IPMI v2.0 BMC (RMCP+ over UDP, cipher suites 3 and 17) that powers, resets and boots the VM, for ipmitool -I lanplus and Ironic's ipmi driver. IPMI's login hands a password hash to anyone who knows the user name (CVE-2013-4786): prefer Redfish, see docs/ipmi.md"`
	Port     string `env:"IPMI_PORT" envDefault:"623" help:"IPMI UDP port (below 1024 needs root or CAP_NET_BIND_SERVICE)"`
	Listen   string `env:"IPMI_LISTEN" help:"address IPMI listens on, e.g. 127.0.0.1 or one on a management network (default: every address, as docker -p needs)"`
	Username string `env:"IPMI_USERNAME" envDefault:"admin" help:"IPMI user name, 1-16 printable ASCII characters"`
	Password string `env:"IPMI_PASSWORD" help:"IPMI password, 12-20 printable ASCII characters (20 is IPMI's limit), e.g. $(openssl rand -base64 15); required with IPMI_ENABLE=1; the seed project's default 'password' and REDFISH_PASSWORD's value are refused"`
	SystemID string `env:"IPMI_SYSTEM_ID" help:"the system's name in the IPMI log lines, as VirtualBMC's domain name (default: GUEST_NAME); each port serves this one VM"`
}

// IPMI is the IPMI BMC (IPMI_*).
type IPMI struct {
	Enabled  bool
	Listen   string // host part of the listen address; "" is every address
	Port     int
	Username string
	Password string
	SystemID string
}

// Addr is the address the IPMI socket binds.
func (i IPMI) Addr() string {
	return net.JoinHostPort(i.Listen, strconv.Itoa(i.Port))
}

// IPMI passwords: RAKP gives anyone who knows the user name an HMAC of the
// password to test guesses against offline, so the floor is higher than
// Redfish's; 20 bytes is all an IPMI 2.0 key holds.
const (
	ipmiMinPassword = 12
	ipmiMaxPassword = 20
	ipmiMaxUser     = 16
)

// loadIPMI reads IPMI_*; after loadMachine (GUEST_NAME) and loadRedfish
// (whose password IPMI must not reuse).
func loadIPMI(c *Config, environ map[string]string) error {
	var raw rawIPMI
	if err := env.ParseWithOptions(&raw, env.Options{Environment: environ}); err != nil {
		return fmt.Errorf("reading environment: %w", err)
	}
	on, err := parseBool("IPMI_ENABLE", raw.Enable)
	if err != nil || !on {
		return err
	}
	// The BMC must outlive the server it manages; an explicit 0 stays 0.
	if strings.TrimSpace(environ["KEEP_ALIVE_AFTER_VM_STOP"]) == "" {
		c.KeepAlive = true
	}
	var errs []error
	i := IPMI{Enabled: true, Listen: raw.Listen, Username: raw.Username, Password: raw.Password, SystemID: raw.SystemID}
	if i.Port, err = parsePort("IPMI_PORT", raw.Port); err != nil {
		errs = append(errs, err)
	}
	if i.Listen != "" && net.ParseIP(i.Listen) == nil {
		errs = append(errs, &Error{Var: "IPMI_LISTEN", Value: i.Listen, Accepted: "an IP address such as 127.0.0.1 or ::1, or unset for every address"})
	}
	if i.Username == "" || len(i.Username) > ipmiMaxUser || !printableASCII(i.Username) {
		errs = append(errs, &Error{Var: "IPMI_USERNAME", Value: i.Username, Accepted: "1-16 printable ASCII characters (IPMI's limit)"})
	}
	const advice = "e.g. IPMI_PASSWORD=$(openssl rand -base64 15)"
	switch p := i.Password; {
	case p == "":
		errs = append(errs, &Error{Var: "IPMI_PASSWORD", Value: "", Accepted: "a password of your own, 12-20 printable ASCII characters, " + advice + "; required with IPMI_ENABLE=1"})
	case p == "password":
		errs = append(errs, &Error{Var: "IPMI_PASSWORD", Value: Masked,
			Accepted: "a password of your own (the seed project's default 'password' is refused: anyone who can reach the port could power the VM), " + advice})
	case len(p) < ipmiMinPassword || len(p) > ipmiMaxPassword || !printableASCII(p):
		errs = append(errs, &Error{Var: "IPMI_PASSWORD", Value: Masked,
			Accepted: "12-20 printable ASCII characters (IPMI's login exposes a hash of it to offline guessing; 20 is IPMI's limit), " + advice})
	case c.Redfish.Enabled && p == c.Redfish.Password:
		errs = append(errs, &Error{Var: "IPMI_PASSWORD", Value: Masked,
			Accepted: "a password other than REDFISH_PASSWORD: IPMI's login exposes a hash of it to offline guessing, which would put the Redfish password at risk too"})
	}
	if i.SystemID == "" {
		i.SystemID = c.GuestName
	}
	if !redfishID.MatchString(i.SystemID) {
		errs = append(errs, &Error{Var: "IPMI_SYSTEM_ID", Value: i.SystemID, Accepted: "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"})
	}
	c.IPMI = i
	return errors.Join(errs...)
}

// effective is --show-config's view of i, in --help order.
func (i IPMI) effective() [][2]string {
	out := [][2]string{{"IPMI_ENABLE", fmt.Sprint(i.Enabled)}}
	if !i.Enabled {
		return out
	}
	return append(out, [][2]string{
		{"IPMI_PORT", fmt.Sprint(i.Port)}, {"IPMI_LISTEN", i.Listen},
		{"IPMI_USERNAME", i.Username}, {"IPMI_PASSWORD", i.Password}, {"IPMI_SYSTEM_ID", i.SystemID},
	}...)
}
