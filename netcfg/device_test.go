package netcfg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestVhostAdvice(t *testing.T) {
	tests := []struct {
		name    string
		openErr error
		onHost  bool
		want    string // "": say nothing
	}{
		{"in use", nil, true, ""},
		{"host has it, container lacks it", &os.PathError{Op: "open", Path: vhostDevice, Err: syscall.ENOENT}, true, "--device /dev/vhost-net"},
		{"node shared, device cgroup refuses it", &os.PathError{Op: "open", Path: vhostDevice, Err: syscall.EPERM}, true, "--device /dev/vhost-net"},
		{"host has none", &os.PathError{Op: "open", Path: vhostDevice, Err: syscall.ENOENT}, false, ""},
		{"refused, and host has none", &os.PathError{Op: "open", Path: vhostDevice, Err: syscall.EPERM}, false, ""},
		{"another failure", &os.PathError{Op: "open", Path: vhostDevice, Err: syscall.EIO}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := VhostAdvice(tt.openErr, tt.onHost)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("VhostAdvice(%v, %v) = %q; want %q", tt.openErr, tt.onHost, got, tt.want)
			}
			if got != "" && !strings.Contains(got, "faster") {
				t.Errorf("advice %q does not say what it gains", got)
			}
		})
	}
}

func TestMiscHas(t *testing.T) {
	misc := "200 tun\n238 vhost-net\n 58 network_throughput\n"
	for name, want := range map[string]bool{"vhost-net": true, "tun": true, "vhost": false, "238": false, "kvm": false} {
		if got := MiscHas(misc, name); got != want {
			t.Errorf("MiscHas(%q) = %v; want %v", name, got, want)
		}
	}
	if MiscHas("", "vhost-net") {
		t.Error("an empty /proc/misc lists vhost-net")
	}
}

func TestDeviceError(t *testing.T) {
	e := fmt.Errorf("wrapped: %w", &DeviceError{Op: OpOpen, Path: "/dev/tap7", Driver: DriverMacvtap, Major: 246, Minor: 7, Err: syscall.EPERM})
	if !errors.Is(e, unix.EPERM) {
		t.Error("the errno is lost")
	}
	var d *DeviceError
	if !errors.As(e, &d) || d.Major != 246 {
		t.Errorf("errors.As: %v", d)
	}
	if want := "opening /dev/tap7 (macvtap, character device 246:7): operation not permitted"; !strings.Contains(e.Error(), want) {
		t.Errorf("%q lacks %q", e.Error(), want)
	}
}

// TestOpenTunMakesTheNode: a container's /dev without net/tun gets the
// node (10:200, 0666, its folder made), as with --device /dev/net/tun.
func TestOpenTunMakesTheNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making device nodes needs root")
	}
	path := filepath.Join(t.TempDir(), "net", "tun")
	old := unix.Umask(0o077) // the mode must not depend on the umask
	defer unix.Umask(old)
	f, err := openTun(path)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		t.Skipf("device nodes cannot be made or opened here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(10, 200) || st.Mode&0o777 != 0o666 {
		t.Errorf("node mode %o, device %d:%d; want a character device 10:200, 0666", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	// The node made, the next open uses it.
	f, err = openTun(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// TestOpenTunFailures: a node that cannot be made is a DeviceError of the
// mknod step, so the advice can name --device /dev/net/tun.
func TestOpenTunFailures(t *testing.T) {
	// No node, and its folder cannot be made: procfs takes no new folders.
	_, err := openTun("/proc/vmrunner-no-such-folder/tun")
	var d *DeviceError
	if !errors.As(err, &d) || d.Op != OpMknod || d.Driver != DriverTun || d.Major != 10 || d.Minor != 200 {
		t.Errorf("openTun in procfs: %v; want a mknod DeviceError for 10:200", err)
	}
	// A node that is there but does not open: open's error, kept as such.
	_, err = openTun(t.TempDir())
	if !errors.As(err, &d) || d.Op != OpOpen || !errors.Is(err, unix.EISDIR) {
		t.Errorf("openTun of a folder: %v; want an open DeviceError (EISDIR)", err)
	}
}
