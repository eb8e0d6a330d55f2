package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ProbeHost reads the facts Load needs from this machine: the cgroup's
// memory and CPU limits (v2, then v1), falling back to the whole machine.
func ProbeHost() Host {
	h := Host{StateHome: os.Getenv("XDG_STATE_HOME"), CPUs: runtime.NumCPU(), PID1: os.Getpid() == 1, Arch: HostArch()}
	h.Hostname, _ = os.Hostname()
	h.FreeBytes = freeBytes
	h.HomeDir, _ = os.UserHomeDir()
	h.MemoryMiB = memTotalMiB(readFile("/proc/meminfo"))
	if lim, ok := cgroupMemoryLimit(readFile("/sys/fs/cgroup/memory.max"), readFile("/sys/fs/cgroup/memory/memory.limit_in_bytes")); ok {
		h.MemoryMiB = min(h.MemoryMiB, int(lim>>20))
	}
	if n, ok := cgroupCPULimit(readFile("/sys/fs/cgroup/cpu.max")); ok {
		h.CPUs = min(h.CPUs, n)
	}
	return h
}

// freeBytes is what an unprivileged user may still write on path's
// filesystem; a path not made yet is measured at its nearest parent.
func freeBytes(path string) (int64, error) {
	for {
		var st unix.Statfs_t
		err := unix.Statfs(path, &st)
		if err == nil {
			return int64(st.Bavail) * st.Bsize, nil
		}
		parent := filepath.Dir(path)
		if !errors.Is(err, unix.ENOENT) || parent == path {
			return 0, fmt.Errorf("free space of %s: %w", path, err)
		}
		path = parent
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func memTotalMiB(meminfo string) int {
	for _, line := range strings.Split(meminfo, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.Atoi(f[1])
			return kb >> 10
		}
	}
	return 0
}

// cgroupMemoryLimit parses cgroup v2 memory.max or v1
// memory.limit_in_bytes; "max" and v1's huge sentinel mean no limit.
func cgroupMemoryLimit(v2, v1 string) (int64, bool) {
	for _, s := range []string{v2, v1} {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err == nil && n > 0 && n < 1<<62 {
			return n, true
		}
	}
	return 0, false
}

// cgroupCPULimit parses cgroup v2 cpu.max ("quota period" or "max period")
// into whole CPUs, rounding up so a 1.5-CPU limit still gives 2 vCPUs.
func cgroupCPULimit(s string) (int, bool) {
	f := strings.Fields(s)
	if len(f) != 2 || f[0] == "max" {
		return 0, false
	}
	quota, err1 := strconv.Atoi(f[0])
	period, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || quota <= 0 || period <= 0 {
		return 0, false
	}
	return (quota + period - 1) / period, true
}
