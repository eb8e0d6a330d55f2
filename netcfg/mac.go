// Package netcfg prepares the host side of each guest NIC and holds the
// decisions about addresses and MTUs as pure functions.
package netcfg

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// DeriveMAC gives a stable MAC for NIC index of the VM name: QEMU's
// locally administered 52:54:00 prefix plus three bytes of a hash, so two
// VMs on one LAN differ and one VM keeps its address (and DHCP lease).
func DeriveMAC(name string, index int) net.HardwareAddr {
	sum := sha256.Sum256([]byte(fmt.Sprintf("vmrunner/%s/%d", name, index)))
	return net.HardwareAddr{0x52, 0x54, 0x00, sum[0], sum[1], sum[2]}
}

// MACFile is the state file that keeps NIC index's MAC.
func MACFile(stateDir string, index int) string {
	return filepath.Join(stateDir, fmt.Sprintf("mac-%d", index))
}

// ChooseMAC returns the MAC for a NIC: the configured one, else the one
// kept in the state folder, else a derived one.
func ChooseMAC(configured net.HardwareAddr, kept string, name string, index int) (net.HardwareAddr, error) {
	if configured != nil {
		return configured, nil
	}
	if kept = strings.TrimSpace(kept); kept != "" {
		mac, err := net.ParseMAC(kept)
		if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
			return nil, fmt.Errorf("kept MAC %q is not a MAC address (delete the mac-%d file to derive a new one)", kept, index)
		}
		return mac, nil
	}
	return DeriveMAC(name, index), nil
}

// ReadKeptMAC reads the mac-N file; a missing file is no MAC, not an error.
func ReadKeptMAC(stateDir string, index int) (string, error) {
	b, err := os.ReadFile(MACFile(stateDir, index))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return string(b), err
}

// KeepMAC writes the mac-N file.
func KeepMAC(stateDir string, index int, mac net.HardwareAddr) error {
	return os.WriteFile(MACFile(stateDir, index), []byte(mac.String()+"\n"), 0o644)
}
