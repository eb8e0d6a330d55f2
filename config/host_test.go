package config

import "testing"

func TestCgroupMemoryLimit(t *testing.T) {
	tests := []struct {
		name   string
		v2, v1 string
		want   int64
		ok     bool
	}{
		{"v2 limit", "2147483648\n", "", 2 << 30, true},
		{"v2 max", "max\n", "", 0, false},
		{"v2 max, v1 absent", "max", "", 0, false},
		{"v1 limit", "", "1073741824\n", 1 << 30, true},
		{"v1 unlimited sentinel", "", "9223372036854771712\n", 0, false},
		{"v2 wins", "536870912", "1073741824", 512 << 20, true},
		{"neither", "", "", 0, false},
		{"zero", "0", "", 0, false},
		{"garbage", "lots", "", 0, false},
		{"negative", "-1", "", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := cgroupMemoryLimit(tc.v2, tc.v1)
			if got != tc.want || ok != tc.ok {
				t.Errorf("cgroupMemoryLimit(%q, %q) = %d, %v; want %d, %v", tc.v2, tc.v1, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestCgroupCPULimit(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"max 100000\n", 0, false},
		{"100000 100000\n", 1, true},
		{"200000 100000", 2, true},
		{"150000 100000", 2, true}, // 1.5 CPUs round up
		{"50000 100000", 1, true},
		{"1 100000", 1, true},
		{"400000 50000", 8, true},
		{"", 0, false},
		{"100000", 0, false},
		{"abc 100000", 0, false},
		{"100000 0", 0, false},
		{"-1 100000", 0, false},
		{"100000 100000 1", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := cgroupCPULimit(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("cgroupCPULimit(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestMemTotalMiB(t *testing.T) {
	tests := []struct {
		name, in string
		want     int
	}{
		{"typical", "MemTotal:       16318480 kB\nMemFree:         1234567 kB\nMemAvailable:    9876543 kB\n", 15936},
		{"not first", "MemFree: 1 kB\nMemTotal: 2097152 kB\n", 2048},
		{"missing", "MemFree: 1 kB\n", 0},
		{"empty", "", 0},
		{"garbage", "MemTotal: lots kB\n", 0},
		{"prefix only", "MemTotalX: 2097152 kB\n", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := memTotalMiB(tc.in); got != tc.want {
				t.Errorf("memTotalMiB(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestProbeHostIsSane(t *testing.T) {
	h := ProbeHost()
	if h.CPUs < 1 || h.MemoryMiB < 1 {
		t.Errorf("ProbeHost() = %+v", h)
	}
}
