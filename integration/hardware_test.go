package integration

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHardwareTPM boots the test guest with TPM=1: the guest's kernel
// finds a TPM 2.0 (tpm_tis is built into Debian's kernel), swtpm runs
// beside QEMU as QEMU's user with its state folder private to that user,
// the state outlives a restart of vmrunner, swtpm is gone once vmrunner
// has stopped, and --cleanup removes the state.
func TestHardwareTPM(t *testing.T) {
	t.Parallel()
	needGuest(t)
	_, err := exec.LookPath("swtpm")
	need(t, "swtpm (apt-get install swtpm)", err == nil)
	env := GuestEnv(t)
	env["TPM"] = "1"
	// Without quiet: the kernel's TPM driver says what it found.
	env["KERNEL_CMDLINE"] = "console=ttyS0 no_timer_check vmtest.slaac_wait=1"
	state := filepath.Join(env["DATA_DIR"], "vms", env["GUEST_NAME"])
	tpmDir, sock := filepath.Join(state, "tpm"), filepath.Join(state, "tpm.sock")
	var firstState []byte

	for run := 1; run <= 2; run++ {
		v := Start(t, env)
		m := v.WaitLine(`tpm_tis \S+: (2\.0) TPM`, 3*time.Minute)
		t.Logf("run %d: the guest found a TPM %s", run, m[1])
		v.WaitReady()

		pids := swtpmPIDs(t, sock)
		if len(pids) != 1 {
			t.Fatalf("run %d: %d swtpm processes for %s, want 1", run, len(pids), sock)
		}
		qemu := procStatus(t, qemuPID(t, v))
		swtpm := procStatus(t, pids[0])
		if swtpm["Uid"] != qemu["Uid"] || swtpm["Gid"] != qemu["Gid"] || swtpm["CapEff"] != qemu["CapEff"] {
			t.Errorf("swtpm runs as uid %q gid %q caps %q; QEMU as %q %q %q: want the same confinement",
				swtpm["Uid"], swtpm["Gid"], swtpm["CapEff"], qemu["Uid"], qemu["Gid"], qemu["CapEff"])
		}
		var st syscall.Stat_t
		if err := syscall.Stat(tpmDir, &st); err != nil {
			t.Fatal(err)
		}
		uid := strings.Fields(swtpm["Uid"])[0]
		if st.Mode&0o777 != 0o700 || strconv.Itoa(int(st.Uid)) != uid {
			t.Errorf("%s: mode %#o owner %d; want 0700 owned by swtpm's uid %s", tpmDir, st.Mode&0o777, st.Uid, uid)
		}
		if run == 2 && firstState != nil {
			// The TPM's seeds from the first run are still in its state:
			// the TPM was not made anew.
			now, err := os.ReadFile(filepath.Join(tpmDir, "tpm2-00.permall"))
			if err != nil {
				t.Fatal(err)
			}
			if n := sharedChunks(firstState, now); n == 0 {
				t.Errorf("the TPM state of run 2 shares nothing with run 1's")
			} else {
				t.Logf("run 2's TPM state keeps %d random 16-byte chunks of run 1's", n)
			}
		}

		v.Signal(syscall.SIGTERM)
		if code := v.Wait(time.Minute); code != 0 {
			t.Fatalf("run %d: exit status %d, want 0", run, code)
		}
		if pids := swtpmPIDs(t, sock); len(pids) != 0 {
			t.Errorf("run %d: swtpm %v still runs after vmrunner stopped", run, pids)
		}
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Errorf("run %d: %s left behind (%v)", run, sock, err)
		}
		b, err := os.ReadFile(filepath.Join(tpmDir, "tpm2-00.permall"))
		if err != nil {
			t.Fatalf("run %d: the TPM's state is not kept: %v", run, err)
		}
		if run == 1 {
			firstState = b
		}
	}

	cmd := exec.Command(binary, "--cleanup")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DATA_DIR=" + env["DATA_DIR"], "GUEST_NAME=" + env["GUEST_NAME"]}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("--cleanup: %v\n%s", err, out)
	}
	if _, err := os.Lstat(tpmDir); !os.IsNotExist(err) {
		t.Errorf("--cleanup left %s (%v)", tpmDir, err)
	}
}

// TestHardwareTPMUEFI boots the test guest with TPM=1 under OVMF (UEFI),
// whose own TPM 2.0 driver measures the boot before the kernel takes the
// TPM over.
func TestHardwareTPMUEFI(t *testing.T) {
	t.Parallel()
	needGuest(t)
	_, err := exec.LookPath("swtpm")
	need(t, "swtpm (apt-get install swtpm)", err == nil)
	env := GuestEnv(t)
	env["TPM"], env["BOOT_MODE"] = "1", "uefi"
	env["KERNEL_CMDLINE"] = "console=ttyS0 no_timer_check vmtest.slaac_wait=1"
	v := Start(t, env)
	v.WaitLine(`tpm_tis \S+: 2\.0 TPM`, 4*time.Minute)
	v.WaitReady()
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

// swtpmPIDs are the swtpm processes whose control socket is sock.
func swtpmPIDs(t *testing.T, sock string) []int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if filepath.Base(args[0]) == "swtpm" && bytes.Contains(b, []byte("path="+sock+",")) {
			pid, _ := strconv.Atoi(filepath.Base(d))
			pids = append(pids, pid)
		}
	}
	return pids
}

// sharedChunks counts the 16-byte chunks of a that look random (no byte
// repeated) and occur in b.
func sharedChunks(a, b []byte) int {
	n := 0
	for i := 0; i+16 <= len(a); i += 16 {
		c := a[i : i+16]
		seen, random := map[byte]bool{}, true
		for _, x := range c {
			if seen[x] {
				random = false
				break
			}
			seen[x] = true
		}
		if random && bytes.Contains(b, c) {
			n++
		}
	}
	return n
}

// TestHardwareUSBDisk boots the test guest with DISK_TYPE=usb: its disk
// and an extra one are usb-storage devices on the qemu-xhci controller
// vmrunner adds for them, and the guest's kernel (xhci_pci, usb_storage)
// sees both with their sizes.
func TestHardwareUSBDisk(t *testing.T) {
	t.Parallel()
	needGuest(t)
	need(t, "a test guest whose initramfs has usb_storage (rebuild it: integration/guest/build.sh "+guestDir+")", guestHasModule(t, "usb_storage"))
	env := GuestEnv(t)
	env["DISK_TYPE"] = "usb"
	env["BOOT_FROM"] = "blank"
	env["DISK_SIZE"] = "64M"
	env["DISK2_SIZE"] = "32M"
	env["KERNEL_CMDLINE"] += " vmtest.slaac_wait=1 vmtest.usb_disks=2"
	v := Start(t, env)
	v.WaitReady()
	sizes := map[string]bool{}
	for _, line := range strings.Split(v.Console(), "\n") {
		var name string
		var size int64
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "VMTEST disk name=%s size=%d", &name, &size); err == nil && strings.HasPrefix(name, "sd") {
			sizes[fmt.Sprint(size)] = true
		}
	}
	if !sizes[fmt.Sprint(64<<20)] || !sizes[fmt.Sprint(32<<20)] {
		t.Errorf("the guest's SCSI disks have sizes %v; want the two USB disks of 64 MiB and 32 MiB", sizes)
	}
	if !strings.Contains(v.Console(), "VMTEST disk name=sd") {
		t.Errorf("no sd* disk in the guest")
	}
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

// TestHardwareGPUStandIn runs GPU=intel on this machine, which has no
// render node: refused before anything is made without one; with a
// stand-in node (/dev/null, a character device that opens) the dry run
// shows the GPU, and a real start boots the guest with a virtio GPU on
// its PCI bus, QEMU's EGL display falling back to Mesa's software
// renderer. Rendering on a real render node is not tested here
// (docs/hardware.md).
func TestHardwareGPUStandIn(t *testing.T) {
	t.Parallel()
	needGuest(t)
	_, err := os.Stat("/usr/lib/x86_64-linux-gnu/qemu/hw-display-virtio-gpu-gl.so")
	need(t, "QEMU's virtio-gpu-gl module (apt-get install qemu-system-gui)", err == nil)
	nodes, _ := filepath.Glob("/dev/dri/renderD*")
	env := GuestEnv(t)
	env["GPU"] = "intel"
	env["GRAPHICS"] = "vnc"
	env["VNC_PORT"] = fmt.Sprint(FreePort(t))
	env["VNC_LISTEN"] = "127.0.0.1"
	if len(nodes) == 0 {
		v := Start(t, env)
		if code := v.Wait(time.Minute); code != 2 {
			t.Errorf("GPU=intel without a render node: exit %d, want 2", code)
		}
		if !strings.Contains(v.Stderr(), "GPU_RENDER_NODE") || !strings.Contains(v.Stderr(), "--device /dev/dri/renderD128") {
			t.Errorf("no advice in:\n%s", v.Stderr())
		}
		if _, err := os.Stat(filepath.Join(env["DATA_DIR"], "vms")); !os.IsNotExist(err) {
			t.Errorf("a refused start made %s (%v)", filepath.Join(env["DATA_DIR"], "vms"), err)
		}
	}

	env["GPU_RENDER_NODE"] = "/dev/null"
	cmd := exec.Command(binary, "--dry-run")
	for k, val := range env {
		cmd.Env = append(cmd.Env, k+"="+val)
	}
	cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("--dry-run: %v", err)
	}
	for _, want := range []string{"-display egl-headless,rendernode=/dev/null", "-device virtio-vga-gl,id=video0", "-vnc 127.0.0.1:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--dry-run lacks %q:\n%s", want, out)
		}
	}

	// Without quiet: the kernel lists the PCI devices it finds.
	env["KERNEL_CMDLINE"] = "console=ttyS0 no_timer_check vmtest.slaac_wait=1"
	v := Start(t, env)
	// virtio-gpu (virtio 1.0 id 1af4:1050) as a VGA-class display device.
	v.WaitLine(`\[1af4:1050\] type 00 class 0x030000`, 3*time.Minute)
	v.WaitReady()
	t.Logf("QEMU on /dev/null as render node says: %s", lastQEMULine(v.Stderr()))
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(time.Minute); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

// guestHasModule says whether the test guest's initramfs carries the
// kernel module name (a guest built before its recipe named it does not).
func guestHasModule(t *testing.T, name string) bool {
	t.Helper()
	f, err := os.Open(filepath.Join(guestDir, "initrd.gz"))
	if err != nil {
		return false
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return false
	}
	b, err := io.ReadAll(z)
	return err == nil && bytes.Contains(b, []byte("lib/modules/"+name+".ko\x00"))
}

// lastQEMULine is the last line QEMU wrote to its stderr, as logged.
func lastQEMULine(log string) string {
	last := ""
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"msg":"qemu"`) {
			last = l
		}
	}
	return last
}
