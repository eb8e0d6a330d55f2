package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// MaxDisks is the highest number of DISKn_SIZE and DEVICEn.
const MaxDisks = 6

var (
	diskCaches = []string{"none", "writeback", "writethrough", "directsync", "unsafe"}
	diskIOs    = []string{"native", "threads", "io_uring"}
)

func loadDisks(c *Config, raw rawMachine, environ map[string]string) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	c.DiskBus, err = oneOf("DISK_TYPE", raw.DiskType, BusVirtio, BusSCSI, BusNVMe, BusIDE, BusUSB)
	add(err)
	c.DiskCache, err = oneOf("DISK_CACHE", raw.DiskCache, diskCaches...)
	add(err)
	c.DiskIO, err = loadDiskIO(raw.DiskIO, c.DiskCache)
	add(err)
	if raw.Persist != "" {
		on, err := parseBool("PERSIST", raw.Persist)
		add(err)
		c.Persist = &on
	}
	if raw.Device != "" {
		add(addDevice(c, 1, "DEVICE", raw.Device))
	}
	disks, err := readNumbered[rawDisk](environ, diskFamily)
	add(err)
	for _, d := range disks {
		if d.Raw.Size != "" {
			size, err := parseSize(fmt.Sprintf("DISK%d_SIZE", d.N), d.Raw.Size)
			add(err)
			c.ExtraDisks = append(c.ExtraDisks, ExtraDisk{Index: d.N, Size: size})
		}
		if d.Raw.Device != "" {
			add(addDevice(c, d.N, deviceVar(d.N), d.Raw.Device))
		}
	}
	return errors.Join(errs...)
}

// oneOf is the parser of every enumerated variable: v, with case and
// surrounding space ignored, must be one of accepted; the error lists them.
func oneOf[T ~string](name, v string, accepted ...T) (T, error) {
	s := T(strings.ToLower(strings.TrimSpace(v)))
	if slices.Contains(accepted, s) {
		return s, nil
	}
	names := make([]string, len(accepted))
	for i, a := range accepted {
		names[i] = string(a)
	}
	list := strings.Join(names, ", ")
	if n := len(names); n > 1 {
		list = strings.Join(names[:n-1], ", ") + " or " + names[n-1]
	}
	return "", &Error{Var: name, Value: v, Accepted: list}
}

// loadDiskIO defaults to native AIO, which needs O_DIRECT: so only with
// DISK_CACHE=none or directsync, where QEMU refuses it otherwise.
func loadDiskIO(v, cache string) (string, error) {
	direct := cache == "none" || cache == "directsync"
	if v == "" {
		if direct {
			return "native", nil
		}
		return "threads", nil
	}
	io, err := oneOf("DISK_IO", v, diskIOs...)
	if err == nil && io == "native" && !direct {
		return "", &Error{Var: "DISK_IO", Value: v, Accepted: "threads or io_uring with DISK_CACHE=" + cache + " (native needs DISK_CACHE=none or directsync)"}
	}
	return io, err
}

// addDevice checks a device the way QEMU will use it: a block device or a
// regular file, opened read-write, and not given twice.
func addDevice(c *Config, index int, name, path string) error {
	accepted := "an existing block device or regular file that vmrunner may open read-write, each named once"
	abs, err := filepath.Abs(path)
	if err != nil {
		return &Error{Var: name, Value: path, Accepted: accepted, Err: err}
	}
	st, err := os.Stat(abs)
	if err != nil {
		return &Error{Var: name, Value: path, Accepted: accepted, Err: err}
	}
	if kind := fileKind(st.Mode()); kind != "" {
		return &Error{Var: name, Value: path, Accepted: accepted, Err: fmt.Errorf("is a %s", kind)}
	}
	f, err := os.OpenFile(abs, os.O_RDWR, 0)
	if err != nil {
		return &Error{Var: name, Value: path, Accepted: accepted, Err: err}
	}
	f.Close()
	for _, d := range c.Devices {
		if d.Path == abs {
			return &Error{Var: name, Value: path, Accepted: accepted, Err: fmt.Errorf("already given as %s", deviceVar(d.Index))}
		}
	}
	c.Devices = append(c.Devices, Device{Index: index, Path: abs})
	return nil
}

// fileKind names what a device path must not be; "" for a block device or
// a regular file.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return ""
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		return ""
	case m.IsDir():
		return "directory"
	case m&os.ModeCharDevice != 0:
		return "character device"
	}
	return "special file"
}

func deviceVar(index int) string {
	if index == 1 {
		return "DEVICE"
	}
	return fmt.Sprintf("DEVICE%d", index)
}

// Var is the variable that named d.
func (d Device) Var() string { return deviceVar(d.Index) }
