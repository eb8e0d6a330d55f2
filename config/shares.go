package config

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// MaxShares is the highest n of FILESYSTEMn_*.
const MaxShares = 8

// ShareDriver is how a host folder reaches the guest (FILESYSTEM_DRIVER).
type ShareDriver string

const (
	ShareVirtiofs ShareDriver = "virtiofs" // vhost-user-fs with Debian's virtiofsd
	Share9p       ShareDriver = "9p"       // virtio-9p, inside QEMU
)

// Access modes (FILESYSTEM_ACCESSMODE), libvirt's names: how file owners
// and modes the guest sets land on the host.
const (
	AccessPassthrough = "passthrough" // as the guest sets them (needs root on the host)
	AccessMapped      = "mapped"      // kept in extended attributes; host files stay the runner's
	AccessSquash      = "squash"      // like passthrough, failures to set owners ignored
)

// Share is FILESYSTEM_* (Index 1) or FILESYSTEMn_*: a host folder the
// guest mounts.
type Share struct {
	Index  int
	Source string // absolute host folder
	Target string // absolute guest path it is mounted on
	// Name is the seed project's FILESYSTEM_TARGET, a bare word: the
	// mount tag, mounted on /mnt/NAME; "": the tag is shareN.
	Name       string
	Driver     ShareDriver
	DriverSet  bool // FILESYSTEM_DRIVER was given: no fallback to 9p
	AccessMode string
	ReadOnly   bool
}

// Prefix is the environment prefix of this share's variables.
func (s Share) Prefix() string { return sharePrefix(s.Index) }

// Tag is the mount tag the guest names the share by.
func (s Share) Tag() string {
	if s.Name != "" {
		return s.Name
	}
	return fmt.Sprintf("share%d", s.Index)
}

func sharePrefix(n int) string { return shareFamily.name(shareFamily.prefix, n) }

var (
	// guestPath is what a target may hold: it goes into /etc/fstab and a
	// shell script in the guest, so no spaces, quotes or other specials.
	guestPath = regexp.MustCompile(`^(/[A-Za-z0-9._+@-]+)+$`)
	// shareName is a bare FILESYSTEM_TARGET, the seed project's form: a
	// mount tag (9p takes at most 31 bytes).
	shareName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$`)
)

func loadShares(c *Config, environ map[string]string) error {
	var errs []error
	raws, err := readNumbered[rawShare](environ, shareFamily)
	if err != nil {
		errs = append(errs, err)
	}
	targets := map[string]string{}
	for _, r := range raws {
		s, err := loadShare(r.N, r.Raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if other, ok := targets[s.Target]; ok {
			errs = append(errs, &Error{Var: s.Prefix() + "TARGET", Value: s.Target, Accepted: "a guest path no other share uses (" + other + " has it)"})
			continue
		}
		targets[s.Target] = s.Prefix() + "TARGET"
		c.Shares = append(c.Shares, s)
	}
	return errors.Join(errs...)
}

func loadShare(n int, raw rawShare) (Share, error) {
	p := sharePrefix(n)
	s := Share{Index: n}
	var errs []error
	src, err := filepath.Abs(raw.Source)
	if raw.Source == "" { // set but empty: not the current folder
		err = errors.New("is empty")
	}
	if err == nil {
		var st os.FileInfo
		if st, err = os.Stat(src); err == nil && !st.IsDir() {
			err = errors.New("is not a folder")
		}
	}
	if err != nil {
		errs = append(errs, &Error{Var: p + "SOURCE", Value: raw.Source, Accepted: "an existing host folder", Err: err})
	}
	s.Source = src

	s.Target = raw.Target
	switch {
	case raw.Target != "" && !strings.HasPrefix(raw.Target, "/"):
		if !shareName.MatchString(raw.Target) {
			errs = append(errs, &Error{Var: p + "TARGET", Value: raw.Target,
				Accepted: "an absolute guest path, or a name (the seed project's form: the mount tag, mounted on /mnt/NAME) of 1-31 letters, digits and . _ -"})
		}
		s.Name, s.Target = raw.Target, "/mnt/"+raw.Target
	case s.Target == "":
		s.Target = "/mnt/share"
		if n > 1 {
			s.Target += strconv.Itoa(n)
		}
	case !guestPath.MatchString(s.Target) || path.Clean(s.Target) != s.Target || slices.Contains(strings.Split(s.Target, "/"), "..") || s.Target == "/":
		errs = append(errs, &Error{Var: p + "TARGET", Value: raw.Target, Accepted: "an absolute guest path of letters, digits and . _ + @ - (no .., no trailing /)"})
	}

	s.Driver, s.DriverSet = ShareVirtiofs, raw.Driver != ""
	if s.DriverSet {
		d, err := oneOf(p+"DRIVER", raw.Driver, string(ShareVirtiofs), string(Share9p))
		errs = append(errs, err)
		s.Driver = ShareDriver(d)
	}
	s.AccessMode = AccessPassthrough
	if raw.AccessMode != "" {
		s.AccessMode, err = oneOf(p+"ACCESSMODE", raw.AccessMode, AccessPassthrough, AccessMapped, AccessSquash)
		errs = append(errs, err)
	}
	if raw.ReadOnly != "" {
		s.ReadOnly, err = parseBool(p+"READONLY", raw.ReadOnly)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Share{}, err
	}

	// virtiofsd 7.2 (C) passes owners and modes through as they are; 9p
	// can map or squash them. A default driver falls back. (Read-only
	// works with both: vmrunner mounts a virtiofs folder read-only for
	// its virtiofsd.)
	if s.Driver == ShareVirtiofs && s.AccessMode != AccessPassthrough {
		if s.DriverSet {
			return Share{}, &Error{Var: p + "DRIVER", Value: raw.Driver, Accepted: "9p with " + p + "ACCESSMODE=" + s.AccessMode + ", or virtiofs with passthrough"}
		}
		s.Driver = Share9p
	}
	return s, nil
}
