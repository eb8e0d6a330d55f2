package config

import (
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Graphics is what GRAPHICS asks for.
type Graphics string

const (
	GraphicsNone  Graphics = "none"  // serial console only
	GraphicsVNC   Graphics = "vnc"   // a VNC listener on VNC_LISTEN:VNC_PORT
	GraphicsNoVNC Graphics = "novnc" // the web console on NOVNC_PORT (no VNC port)
)

// MaxVNCPassword is what VNC authentication uses of a password: it is the
// DES key, so later characters would be dropped without a word.
const MaxVNCPassword = 8

// Console is the VM's screen (GRAPHICS, VNC_*, NOVNC_*). The TCP VNC
// port itself is Config.VNCPort.
type Console struct {
	Graphics  Graphics
	VNCListen string // address of the TCP VNC listener
	Keymap    string // "": QEMU's default (en-us)
	// VNCPassword is VNC_PASSWORD; "": generated once and kept in the
	// state folder.
	VNCPassword string
	NoVNC       NoVNC // set for GraphicsNoVNC
}

// NoVNC is the web console.
type NoVNC struct {
	Port     int
	Username string
	Password string // "": the VNC password
	Dir      string // noVNC's files (vnc.html, app/, core/)
	// TLSCert and TLSKey are the user's PEM pair, both or neither; empty:
	// the self-signed pair in the state folder, which Redfish shares.
	TLSCert, TLSKey string
}

// Keymaps are QEMU's keyboard layouts (-k; /usr/share/qemu/keymaps).
var Keymaps = []string{"ar", "bepo", "cz", "da", "de", "de-ch", "en-gb", "en-us", "es", "et", "fi", "fo",
	"fr", "fr-be", "fr-ca", "fr-ch", "hr", "hu", "is", "it", "ja", "lt", "lv", "mk", "nl", "no", "pl",
	"pt", "pt-br", "ru", "sl", "sv", "th", "tr"}

// loadGraphics reads GRAPHICS and the VNC_ and NOVNC_ variables.
func loadGraphics(c *Config, raw rawMachine) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	graphics, err := oneOf("GRAPHICS", raw.Graphics, GraphicsNone, GraphicsVNC, GraphicsNoVNC)
	if err != nil {
		return err
	}
	con := Console{Graphics: graphics, VNCListen: raw.VNCListen, Keymap: raw.VNCKeymap, VNCPassword: raw.VNCPassword}
	switch con.Graphics {
	case GraphicsNone:
		c.Console = Console{Graphics: GraphicsNone}
		return nil
	case GraphicsVNC:
		p, err := parsePort("VNC_PORT", raw.VNCPort)
		if err == nil && p < 5900 {
			err = &Error{Var: "VNC_PORT", Value: raw.VNCPort, Accepted: "a port from 5900 to 65535"}
		}
		add(err)
		c.VNCPort = p
		if net.ParseIP(con.VNCListen) == nil {
			add(&Error{Var: "VNC_LISTEN", Value: con.VNCListen, Accepted: "an IP address: 0.0.0.0 (every IPv4 address, for docker run -p), 127.0.0.1, :: or another"})
		}
	case GraphicsNoVNC:
		con.NoVNC, errs = loadNoVNC(raw)
	}
	if con.Keymap != "" && !slices.Contains(Keymaps, con.Keymap) {
		add(&Error{Var: "VNC_KEYMAP", Value: con.Keymap, Accepted: "one of QEMU's layouts: " + strings.Join(Keymaps, " ")})
	}
	if con.VNCPassword != "" {
		add(CheckVNCPassword(con.VNCPassword))
	}
	c.Console = con
	return errors.Join(errs...)
}

// CheckVNCPassword says why pw cannot be a VNC password, without showing
// it; also for a password changed while the VM runs.
func CheckVNCPassword(pw string) error {
	switch {
	case pw == "":
		return &Error{Var: "VNC_PASSWORD", Value: "(empty)", Accepted: "1 to 8 characters"}
	case len(pw) > MaxVNCPassword:
		return &Error{Var: "VNC_PASSWORD", Value: "(" + strconv.Itoa(len(pw)) + " characters)",
			Accepted: "at most 8 characters: VNC authentication uses only the first 8, so a longer password would be cut short without notice (leave it unset for a generated one)"}
	case !printableASCII(pw):
		return &Error{Var: "VNC_PASSWORD", Value: "(hidden)", Accepted: "printable ASCII characters only"}
	}
	return nil
}

func loadNoVNC(raw rawMachine) (NoVNC, []error) {
	var errs []error
	n := NoVNC{Username: raw.NoVNCUser, Password: raw.NoVNCPassword, Dir: raw.NoVNCDir,
		TLSCert: raw.NoVNCCert, TLSKey: raw.NoVNCKey}
	p, err := parsePort("NOVNC_PORT", raw.NoVNCPort)
	if err != nil {
		errs = append(errs, err)
	}
	n.Port = p
	if n.Username == "" || len(n.Username) > 64 || strings.ContainsAny(n.Username, ":") || !printable(n.Username) {
		errs = append(errs, &Error{Var: "NOVNC_USERNAME", Value: n.Username, Accepted: "1-64 characters without ':' or control characters"})
	}
	if len(n.Password) > 128 || !printable(n.Password) {
		errs = append(errs, &Error{Var: "NOVNC_PASSWORD", Value: "(hidden)", Accepted: "at most 128 characters, no control characters (unset: the VNC password)"})
	}
	if err := checkFile("NOVNC_DIR", filepath.Join(n.Dir, "vnc.html"), "a folder holding noVNC's vnc.html (Debian's novnc package installs /usr/share/novnc)"); err != nil {
		err.(*Error).Value = n.Dir
		errs = append(errs, err)
	}
	if (n.TLSCert == "") != (n.TLSKey == "") {
		errs = append(errs, &Error{Var: "NOVNC_TLS_CERT", Value: n.TLSCert, Accepted: "set together with NOVNC_TLS_KEY, or both unset for the self-signed certificate"})
	}
	for _, f := range [][2]string{{"NOVNC_TLS_CERT", n.TLSCert}, {"NOVNC_TLS_KEY", n.TLSKey}} {
		if f[1] != "" {
			if err := checkFile(f[0], f[1], "a readable PEM file"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return n, errs
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// effective lists the console settings for --print-config, secrets hidden.
func (con Console) effective() [][2]string {
	if con.Graphics == GraphicsNone {
		return nil
	}
	hidden := func(s string) string {
		if s == "" {
			return "(generated)"
		}
		return "(set)"
	}
	out := [][2]string{{"VNC_KEYMAP", con.Keymap}, {"VNC_PASSWORD", hidden(con.VNCPassword)}}
	if con.Graphics == GraphicsVNC {
		out = append(out, [2]string{"VNC_LISTEN", con.VNCListen})
	}
	if n := con.NoVNC; con.Graphics == GraphicsNoVNC {
		pw := "(the VNC password)"
		if n.Password != "" {
			pw = "(set)"
		}
		out = append(out, [][2]string{{"NOVNC_PORT", strconv.Itoa(n.Port)}, {"NOVNC_USERNAME", n.Username},
			{"NOVNC_PASSWORD", pw}, {"NOVNC_DIR", n.Dir}, {"NOVNC_TLS_CERT", n.TLSCert}, {"NOVNC_TLS_KEY", n.TLSKey}}...)
	}
	return out
}
