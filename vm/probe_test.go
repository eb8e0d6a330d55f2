package vm

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestMountedAt(t *testing.T) {
	const mountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 22 0:31 / /data rw,relatime - ext4 /dev/sdb1 rw
36 22 8:1 /srv/vm\040images /var/lib/vm\040images rw - ext4 /dev/sda1 rw
37 22 0:40 / /odd\134name\011tab rw - tmpfs tmpfs rw
`
	tests := []struct {
		path string
		want bool
	}{
		{"/", true},
		{"/data", true},
		{"/data/vms", false},
		{"/var/lib/vm images", true}, // a bind mount: same device as /
		{"/var/lib/vm\\040images", false},
		{"/odd\\name\ttab", true},
		{"/srv", false},
	}
	for _, tc := range tests {
		if got := MountedAt(mountinfo, tc.path); got != tc.want {
			t.Errorf("MountedAt(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
	if MountedAt("garbage\n\n", "/") {
		t.Error("a malformed mountinfo lists /")
	}
}

func TestIsMountPoint(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		dir  string
		want bool
	}{
		{"/", true},
		{"/proc", true},
		{filepath.Join(dir, "missing"), false},
	}
	for _, tc := range tests {
		if got := IsMountPoint(tc.dir); got != tc.want {
			t.Errorf("IsMountPoint(%s) = %v, want %v", tc.dir, got, tc.want)
		}
	}
	// A fresh folder is no mount point unless the test's TMPDIR itself is.
	if IsMountPoint(dir) {
		t.Errorf("IsMountPoint(%s) = true for a fresh folder", dir)
	}
}

func TestDirectIOWorks(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Join(dir, "vms", "not-yet")} {
		if !DirectIOWorks(d) {
			t.Skipf("%s refuses O_DIRECT here", d)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Errorf("the probe left %v (%v)", entries, err)
	}
	// /dev/shm is tmpfs: O_DIRECT is refused before Linux 6.6 and works
	// since; either way the probe must leave nothing behind.
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		shm, err := os.MkdirTemp("/dev/shm", "vmrunner-probe-")
		if err != nil {
			t.Skip(err)
		}
		defer os.RemoveAll(shm)
		t.Logf("tmpfs takes O_DIRECT: %v", DirectIOWorks(shm))
		if entries, _ := os.ReadDir(shm); len(entries) != 0 {
			t.Errorf("the probe left %v on tmpfs", entries)
		}
	}
}

// The ioctl numbers as <linux/kvm.h> gives them on x86-64.
func TestKVMIoctlNumbers(t *testing.T) {
	tests := []struct {
		name      string
		got, want uintptr
	}{
		{"KVM_GET_API_VERSION", kvmGetAPIVersion, 0xae00},
		{"KVM_CREATE_VM", kvmCreateVM, 0xae01},
		{"KVM_GET_VCPU_MMAP_SIZE", kvmGetVCPUMmapSize, 0xae04},
		{"KVM_CREATE_VCPU", kvmCreateVCPU, 0xae41},
		{"KVM_SET_TSS_ADDR", kvmSetTSSAddr, 0xae47},
		{"KVM_SET_USER_MEMORY_REGION", kvmSetUserMemoryRegion, 0x4020ae46},
		{"KVM_RUN", kvmRunIoctl, 0xae80},
		{"KVM_SET_REGS", kvmSetRegs, 0x4090ae82},
		{"KVM_GET_SREGS", kvmGetSregs, 0x8138ae83},
		{"KVM_SET_SREGS", kvmSetSregs, 0x4138ae84},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
	if s := unsafe.Sizeof(kvmSegment{}); s != 24 {
		t.Errorf("struct kvm_segment is %d bytes, want 24", s)
	}
	if s := unsafe.Offsetof(kvmSregs{}.CR0); s != 224 {
		t.Errorf("kvm_sregs.cr0 at %d, want 224", s)
	}
}

// kvmRunPage builds a kvm_run page as the kernel leaves it after an exit.
func kvmRunPage(reason uint32, dir, size uint8, port uint16, value byte) []byte {
	run := make([]byte, 4096)
	binary.LittleEndian.PutUint32(run[kvmRunExitReason:], reason)
	run[kvmRunIODirection], run[kvmRunIOSize] = dir, size
	binary.LittleEndian.PutUint16(run[kvmRunIOPort:], port)
	binary.LittleEndian.PutUint64(run[kvmRunIODataOffset:], 4000)
	run[4000] = value
	return run
}

func TestCheckExit(t *testing.T) {
	out := kvmRunPage(kvmExitIO, kvmIOOut, 1, probePort, probeValue)
	hlt := kvmRunPage(kvmExitHLT, 0, 0, 0, 0)
	tests := []struct {
		name       string
		pages      [][]byte
		wantHalted bool
		wantErr    string
	}{
		{"out then hlt", [][]byte{out, hlt}, true, ""},
		{"hlt first", [][]byte{hlt}, false, "halted before"},
		{"wrong port", [][]byte{kvmRunPage(kvmExitIO, kvmIOOut, 1, 0x11, probeValue)}, false, "port 0x11"},
		{"wrong value", [][]byte{kvmRunPage(kvmExitIO, kvmIOOut, 1, probePort, 0)}, false, "unexpected I/O"},
		{"an IN", [][]byte{kvmRunPage(kvmExitIO, 0, 1, probePort, probeValue)}, false, "unexpected I/O"},
		{"entry failure", [][]byte{kvmRunPage(9, 0, 0, 0, 0)}, false, "exit reason 9"},
		{"internal error", [][]byte{kvmRunPage(17, 0, 0, 0, 0)}, false, "exit reason 17"},
	}
	for _, tc := range tests {
		wrote := false
		var halted bool
		var err error
		for _, p := range tc.pages {
			if halted, err = checkExit(p, &wrote); err != nil {
				break
			}
		}
		if halted != tc.wantHalted || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: halted %v, err %v; want %v, %q", tc.name, halted, err, tc.wantHalted, tc.wantErr)
		}
	}
}

// runBounded must get a thread out of a blocking system call, as a vCPU
// stuck in KVM_RUN: ppoll with no descriptors stands in for it (like
// KVM_RUN it returns EINTR on a signal, SA_RESTART or not).
func TestRunBoundedInterruptsBlockedThread(t *testing.T) {
	var stop atomic.Bool
	cleaned := make(chan struct{})
	run := func() error {
		for !stop.Load() {
			ts := unix.NsecToTimespec(int64(time.Hour))
			_, _ = unix.Ppoll(nil, &ts, nil)
		}
		return errStopped
	}
	start := time.Now()
	finished, err := runBounded(run, func() { stop.Store(true) }, func() { close(cleaned) }, 50*time.Millisecond)
	if !finished || !errors.Is(err, errStopped) {
		t.Fatalf("runBounded = %v, %v; want the interrupted run's error", finished, err)
	}
	t.Logf("returned after %s", time.Since(start))
	select {
	case <-cleaned:
	case <-time.After(time.Second):
		t.Error("cleanup did not run")
	}

	finished, err = runBounded(func() error { return nil }, func() {}, func() {}, time.Second)
	if !finished || err != nil {
		t.Errorf("a quick run: %v, %v", finished, err)
	}
}

// On this project's machines KVM does not run guests (no /dev/kvm, or
// nested virtualisation that never executes guest code); on others it
// does. Either way the probe answers within its bound and says why not.
func TestProbeKVMAnswersQuickly(t *testing.T) {
	start := time.Now()
	ok, why := ProbeKVM(KVMProbeTimeout)
	took := time.Since(start)
	t.Logf("ProbeKVM: usable=%v why=%q in %s", ok, why, took)
	if took > time.Second {
		t.Errorf("the probe took %s", took)
	}
	if ok != (why == "") {
		t.Errorf("usable=%v with reason %q", ok, why)
	}
}
