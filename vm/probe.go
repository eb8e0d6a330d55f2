package vm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DirectIOWorks reports whether a file in dir (or, before dir exists, in the
// nearest folder above it, where it will be made) opens with O_DIRECT.
// Failures other than the filesystem refusing O_DIRECT count as working:
// start-up meets and reports them itself.
func DirectIOWorks(dir string) bool {
	probe := filepath.Join(existingAncestor(dir), fmt.Sprintf(".vmrunner-odirect-%d", os.Getpid()))
	fd, err := unix.Open(probe, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EEXIST) {
		return true
	}
	// Linux creates the file before it checks O_DIRECT, so remove it even
	// when the open failed.
	unix.Unlink(probe)
	if err == nil {
		unix.Close(fd)
		return true
	}
	return !errors.Is(err, unix.EINVAL)
}

func existingAncestor(dir string) string {
	for {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// IsMountPoint reports whether dir is a mount point: listed as one in
// /proc/self/mountinfo (which also knows bind mounts from the same
// filesystem), or on another device than its parent.
func IsMountPoint(dir string) bool {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && MountedAt(string(b), real) {
		return true
	}
	var st, parent unix.Stat_t
	if unix.Stat(real, &st) != nil || unix.Stat(filepath.Dir(real), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// MountedAt reports whether mountinfo (proc(5) format) lists a mount on
// path.
func MountedAt(mountinfo, path string) bool {
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountPath(f[4]) == path {
			return true
		}
	}
	return false
}

// unescapeMountPath undoes the kernel's octal escapes (\040 for a space,
// also tab, newline and backslash).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// KVMProbeTimeout is how long the probe guest gets to run its three
// instructions; a working KVM needs well under a millisecond.
const KVMProbeTimeout = 100 * time.Millisecond

// ProbeKVM reports whether KVM really runs guest code here, and if not,
// why. Opening /dev/kvm and even creating a VM succeed where nested
// virtualisation is broken, yet a guest then never executes an
// instruction; so the probe builds a real one-vCPU VM whose real-mode code
// writes 0x42 to I/O port 0x10 and halts, and waits at most timeout for
// both exits. A vCPU still in KVM_RUN then is asked to leave it (the
// kvm_run page's immediate_exit and a signal to its thread); one that
// never returns is abandoned with its thread and file descriptors.
func ProbeKVM(timeout time.Duration) (ok bool, reason string) {
	kvm, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Sprintf("/dev/kvm cannot be opened read-write (%v): pass --device /dev/kvm", err)
	}
	if runtime.GOARCH != "amd64" {
		// The probe guest is x86 code; elsewhere (arm64) making a VM is
		// what is checked.
		defer unix.Close(kvm)
		return kvmCreatesVM(kvm)
	}
	v, err := newProbeVM(kvm)
	if err != nil {
		unix.Close(kvm)
		return false, "KVM opens but cannot make a test guest: " + err.Error()
	}
	finished, err := runBounded(v.run, v.interrupt, func() { v.close(); unix.Close(kvm) }, timeout)
	switch {
	case finished && err == nil:
		return true, ""
	case err == nil || errors.Is(err, errStopped):
		stuck := ""
		if !finished {
			stuck = ", and its vCPU does not leave KVM_RUN"
		}
		return false, fmt.Sprintf("KVM opens but the test guest did not run within %s%s: nested virtualisation without guest execution?", timeout, stuck)
	default:
		return false, "KVM opens but the test guest failed: " + err.Error()
	}
}

// kvmCreatesVM is the probe of hosts other than x86_64: KVM's API answers
// and a VM can be made.
func kvmCreatesVM(kvm int) (ok bool, reason string) {
	if n, err := ioctl(kvm, kvmGetAPIVersion, 0); err != nil || n != kvmAPIVersion {
		return false, fmt.Sprintf("KVM API version %d (%v), want %d", n, err, kvmAPIVersion)
	}
	fd, err := ioctl(kvm, kvmCreateVM, 0)
	if err != nil {
		return false, "KVM opens but cannot make a VM: KVM_CREATE_VM: " + err.Error()
	}
	unix.Close(int(fd))
	return true, ""
}

var errStopped = errors.New("stopped before the guest finished")

// runBounded calls run on a thread of its own and waits up to timeout for
// it. Then it calls interrupt and signals the thread (a blocking system
// call such as KVM_RUN returns EINTR) for up to 100 ms more. cleanup runs
// after run returns, even when that is after runBounded gave up
// (finished false; err then nil).
func runBounded(run func() error, interrupt, cleanup func(), timeout time.Duration) (finished bool, err error) {
	done := make(chan error, 1)
	tid := make(chan int, 1)
	go func() {
		// Never unlocked: the thread ends with run, so whatever a half-run
		// vCPU left on it goes too.
		runtime.LockOSThread()
		tid <- unix.Gettid()
		err := run()
		cleanup()
		done <- err
	}()
	thread := <-tid
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return true, err
	case <-timer.C:
	}
	interrupt()
	for range 10 {
		_ = unix.Tgkill(unix.Getpid(), thread, unix.SIGURG) // the Go runtime ignores a stray SIGURG
		select {
		case err := <-done:
			return true, err
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false, nil
}

// KVM's ioctl numbers, from the _IO/_IOR/_IOW macros of
// <asm-generic/ioctl.h> with KVMIO (0xAE) and the struct sizes of
// <linux/kvm.h> for x86-64; the tests pin them to the header's values.
const (
	kvmIO = 0xAE

	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
)

func ioc(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | kvmIO<<8 | nr }

var (
	kvmGetAPIVersion       = ioc(iocNone, 0x00, 0)
	kvmCreateVM            = ioc(iocNone, 0x01, 0)
	kvmGetVCPUMmapSize     = ioc(iocNone, 0x04, 0)
	kvmCreateVCPU          = ioc(iocNone, 0x41, 0)
	kvmSetTSSAddr          = ioc(iocNone, 0x47, 0)
	kvmSetUserMemoryRegion = ioc(iocWrite, 0x46, unsafe.Sizeof(kvmUserspaceMemoryRegion{}))
	kvmRunIoctl            = ioc(iocNone, 0x80, 0)
	kvmSetRegs             = ioc(iocWrite, 0x82, unsafe.Sizeof(kvmRegs{}))
	kvmGetSregs            = ioc(iocRead, 0x83, unsafe.Sizeof(kvmSregs{}))
	kvmSetSregs            = ioc(iocWrite, 0x84, unsafe.Sizeof(kvmSregs{}))
)

// Offsets in struct kvm_run (the vCPU's shared page) and exit reasons.
const (
	kvmRunImmediateExit = 1
	kvmRunExitReason    = 8  // __u32
	kvmRunIODirection   = 32 // io: __u8 direction, size; __u16 port; __u32 count; __u64 data_offset
	kvmRunIOSize        = 33
	kvmRunIOPort        = 34
	kvmRunIODataOffset  = 40

	kvmIOOut   = 1 // io.direction of an OUT
	kvmExitIO  = 2
	kvmExitHLT = 5

	kvmAPIVersion = 12
)

type kvmUserspaceMemoryRegion struct {
	Slot, Flags                              uint32
	GuestPhysAddr, MemorySize, UserspaceAddr uint64
}

type kvmRegs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

type kvmSegment struct {
	Base                                              uint64
	Limit                                             uint32
	Selector                                          uint16
	Type, Present, DPL, DB, S, L, G, AVL, Unusable, _ uint8
}

type kvmDtable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

type kvmSregs struct {
	CS, DS, ES, FS, GS, SS, TR, LDT         kvmSegment
	GDT, IDT                                kvmDtable
	CR0, CR2, CR3, CR4, CR8, EFER, APICBase uint64
	InterruptBitmap                         [4]uint64
}

// probeCode is real-mode x86: mov al, 0x42; out 0x10, al; hlt.
var probeCode = []byte{0xb0, 0x42, 0xe6, 0x10, 0xf4}

const (
	probePort  = 0x10
	probeValue = 0x42
	probeAddr  = 0x1000 // guest-physical address of probeCode, and of its page
	// probeTSSAddr is where QEMU puts it: just below the BIOS area under
	// 4 GiB, far from the probe guest's one page.
	probeTSSAddr = 0xfffbd000
)

type probeVM struct {
	vm, vcpu int
	mem      []byte
	kvmRun   []byte
	stop     atomic.Bool
	mu       sync.Mutex // orders interrupt against close
	closed   bool
}

func ioctl(fd int, req, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// newProbeVM makes the VM, its memory and its one vCPU, set to run
// probeCode in real mode.
func newProbeVM(kvm int) (v *probeVM, err error) {
	if n, err := ioctl(kvm, kvmGetAPIVersion, 0); err != nil || n != kvmAPIVersion {
		return nil, fmt.Errorf("KVM API version %d (%v), want %d", n, err, kvmAPIVersion)
	}
	v = &probeVM{vm: -1, vcpu: -1}
	defer func() {
		if err != nil {
			v.close()
		}
	}()
	fd, err := ioctl(kvm, kvmCreateVM, 0)
	if err != nil {
		return v, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	v.vm = int(fd)
	if v.mem, err = unix.Mmap(-1, 0, 0x1000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS); err != nil {
		return v, fmt.Errorf("guest memory: %w", err)
	}
	copy(v.mem, probeCode)
	region := kvmUserspaceMemoryRegion{GuestPhysAddr: probeAddr, MemorySize: uint64(len(v.mem)),
		UserspaceAddr: uint64(uintptr(unsafe.Pointer(&v.mem[0])))}
	if _, err := ioctl(v.vm, kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&region))); err != nil {
		return v, fmt.Errorf("KVM_SET_USER_MEMORY_REGION: %w", err)
	}
	// Intel CPUs without "unrestricted guest" run real mode through a
	// task state segment that KVM needs an address for (QEMU's choice);
	// elsewhere it is unused.
	_, _ = ioctl(v.vm, kvmSetTSSAddr, probeTSSAddr)
	if fd, err = ioctl(v.vm, kvmCreateVCPU, 0); err != nil {
		return v, fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	v.vcpu = int(fd)
	size, err := ioctl(kvm, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return v, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	if v.kvmRun, err = unix.Mmap(v.vcpu, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return v, fmt.Errorf("mapping kvm_run: %w", err)
	}
	var sregs kvmSregs
	if _, err := ioctl(v.vcpu, kvmGetSregs, uintptr(unsafe.Pointer(&sregs))); err != nil {
		return v, fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	if _, err := ioctl(v.vcpu, kvmSetSregs, uintptr(unsafe.Pointer(&sregs))); err != nil {
		return v, fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	regs := kvmRegs{RIP: probeAddr, RFLAGS: 2} // bit 1 of RFLAGS is always set
	if _, err := ioctl(v.vcpu, kvmSetRegs, uintptr(unsafe.Pointer(&regs))); err != nil {
		return v, fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	return v, nil
}

// run runs the vCPU until the guest halts after writing probeValue, or
// until interrupt.
func (v *probeVM) run() error {
	wrote := false
	for {
		_, err := ioctl(v.vcpu, kvmRunIoctl, 0)
		switch {
		case v.stop.Load():
			return errStopped
		case err == unix.EINTR || err == unix.EAGAIN:
			continue
		case err != nil:
			return fmt.Errorf("KVM_RUN: %w", err)
		}
		halted, err := checkExit(v.kvmRun, &wrote)
		if err != nil || halted {
			return err
		}
	}
}

// interrupt makes the vCPU's next (or current, with a signal) KVM_RUN
// return and run give up.
func (v *probeVM) interrupt() {
	v.stop.Store(true)
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.closed {
		v.kvmRun[kvmRunImmediateExit] = 1
	}
}

// checkExit reads one KVM exit from the kvm_run page: the expected OUT
// sets *wrote, HLT after it ends the probe (halted), anything else is an
// error.
func checkExit(run []byte, wrote *bool) (halted bool, err error) {
	switch reason := binary.LittleEndian.Uint32(run[kvmRunExitReason:]); reason {
	case kvmExitIO:
		port := binary.LittleEndian.Uint16(run[kvmRunIOPort:])
		off := binary.LittleEndian.Uint64(run[kvmRunIODataOffset:])
		if run[kvmRunIODirection] != kvmIOOut || run[kvmRunIOSize] != 1 || port != probePort || off >= uint64(len(run)) || run[off] != probeValue {
			return false, fmt.Errorf("unexpected I/O exit (port %#x)", port)
		}
		*wrote = true
		return false, nil
	case kvmExitHLT:
		if !*wrote {
			return false, errors.New("halted before its output")
		}
		return true, nil
	default:
		return false, fmt.Errorf("unexpected exit reason %d", reason)
	}
}

func (v *probeVM) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.closed = true
	if v.kvmRun != nil {
		_ = unix.Munmap(v.kvmRun)
	}
	if v.vcpu >= 0 {
		unix.Close(v.vcpu)
	}
	if v.mem != nil {
		_ = unix.Munmap(v.mem)
	}
	if v.vm >= 0 {
		unix.Close(v.vm)
	}
}
