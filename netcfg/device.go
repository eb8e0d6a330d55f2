package netcfg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The character devices a tap NIC may need, by the driver that owns them.
const (
	DriverTun     = "tun"     // /dev/net/tun, 10:200
	DriverMacvtap = "macvtap" // /dev/tapN, dynamic major
)

// DeviceError says a character device could not be made or opened. It
// keeps the step and the device number, because the same errno means
// different things: EPERM from mknod is a missing CAP_MKNOD, EPERM from
// open is the container's device cgroup refusing the device.
type DeviceError struct {
	Op     string // "mknod" or "open"
	Path   string
	Driver string // DriverTun or DriverMacvtap
	Major  uint32
	Minor  uint32
	Err    error
}

// The steps of a DeviceError.
const (
	OpMknod = "mknod"
	OpOpen  = "open"
)

func (e *DeviceError) Error() string {
	verb := "opening"
	if e.Op == OpMknod {
		verb = "making device node"
	}
	return fmt.Sprintf("%s %s (%s, character device %d:%d): %v", verb, e.Path, e.Driver, e.Major, e.Minor, e.Err)
}

func (e *DeviceError) Unwrap() error { return e.Err }

// openChar opens a character device node for reading and writing.
func openChar(path, driver string, dev uint64) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &DeviceError{Op: OpOpen, Path: path, Driver: driver, Major: unix.Major(dev), Minor: unix.Minor(dev), Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// makeChar makes character device node path (and its folder) with mode,
// which the umask does not narrow. A node another process made meanwhile
// is fine: the open that follows checks it.
func makeChar(path, driver string, dev uint64, mode uint32) error {
	fail := func(err error) error {
		return &DeviceError{Op: OpMknod, Path: path, Driver: driver, Major: unix.Major(dev), Minor: unix.Minor(dev), Err: err}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fail(err)
	}
	err := unix.Mknod(path, unix.S_IFCHR|mode, int(dev))
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return fail(err)
	}
	if err := unix.Chmod(path, mode); err != nil {
		return fail(err)
	}
	return nil
}

// tunDev is /dev/net/tun's device number, fixed by the kernel (misc 200).
var tunDev = unix.Mkdev(10, 200)

// openTun opens the tun device at path. A container started without
// --device /dev/net/tun has no node there, but Docker's default device
// cgroup allows the tun device and its default capabilities include
// CAP_MKNOD: so the node is made (as udev would, mode 0666) and bridge
// mode needs only CAP_NET_ADMIN.
func openTun(path string) (*os.File, error) {
	f, err := openChar(path, DriverTun, tunDev)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return f, err
	}
	if err := makeChar(path, DriverTun, tunDev, 0o666); err != nil {
		return nil, err
	}
	return openChar(path, DriverTun, tunDev)
}

// --- vhost-net ---------------------------------------------------------

// VhostAdvice decides what to tell a user whose tap NICs run without
// vhost-net: openErr is what opening the container's /dev/vhost-net gave,
// onHost whether the host's kernel has the device. It is empty when there
// is nothing a docker run flag would change.
func VhostAdvice(openErr error, onHost bool) string {
	if openErr == nil || !onHost {
		return ""
	}
	switch {
	case errors.Is(openErr, unix.ENOENT):
		return "the host has /dev/vhost-net but this container does not: " +
			"docker run --device /dev/vhost-net would make networking faster (in-kernel virtio-net); running without it"
	case errors.Is(openErr, unix.EPERM), errors.Is(openErr, unix.EACCES):
		return "/dev/vhost-net is here but the container may not open it (" + openErr.Error() + "): " +
			"docker run --device /dev/vhost-net would make networking faster (in-kernel virtio-net); running without it"
	}
	return ""
}

// ProbeVhostNet opens /dev/vhost-net and looks whether the host's kernel
// has the device: it is registered in /proc/misc, which is the host's even
// inside a container, once the vhost_net module is loaded.
func ProbeVhostNet() (openErr error, onHost bool) {
	f, err := os.OpenFile(vhostDevice, os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	misc, _ := os.ReadFile("/proc/misc")
	_, sysErr := os.Stat("/sys/class/misc/vhost-net")
	return err, MiscHas(string(misc), "vhost-net") || sysErr == nil
}

// MiscHas reports whether /proc/misc's content ("MINOR NAME" lines) lists
// the device name.
func MiscHas(procMisc, name string) bool {
	for _, line := range strings.Split(procMisc, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == name {
			return true
		}
	}
	return false
}
