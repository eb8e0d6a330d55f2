// Package netcfg prepares the host side of each guest NIC and holds the
// decisions about addresses and MTUs as pure functions.
package netcfg

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
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
// Like every state file it must be this user's and no symlink: its content
// ends up in messages.
func ReadKeptMAC(stateDir string, index int) (string, error) {
	f, err := openOwn(MACFile(stateDir, index), os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64))
	return string(b), err
}

// KeepMAC writes the mac-N file (mode 0600).
func KeepMAC(stateDir string, index int, mac net.HardwareAddr) error {
	f, err := openOwn(MACFile(stateDir, index), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(mac.String() + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ErrNotOwn says a state file is a symlink, not a regular file, or owned
// by another user.
var ErrNotOwn = errors.New("not a regular file of this user")

// openOwn opens a state file without following a symlink and refuses one
// that is not a regular file of this user.
func openOwn(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is a symlink: %w", path, ErrNotOwn)
	}
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	err = unix.Fstat(int(f.Fd()), &st)
	switch {
	case err != nil:
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		err = fmt.Errorf("%s is not a regular file: %w", path, ErrNotOwn)
	case st.Uid != uint32(os.Geteuid()):
		err = fmt.Errorf("%s is owned by uid %d, not by uid %d: %w", path, st.Uid, os.Geteuid(), ErrNotOwn)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
