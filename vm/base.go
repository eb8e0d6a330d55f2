package vm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/image"
)

// selfContained is what BOOT_FROM must be, said in every refusal.
const selfContained = "a self-contained disk image (qcow2, raw, vmdk, vhdx, vpc, vdi) or an ISO: no backing file, external data file, " +
	"extent in another file or parent disk (flatten one with qemu-img convert -O qcow2 IN OUT)"

// ReadCatalog is the catalog DISTRO is looked up in: the built-in one
// with the JSON catalog's (CATALOG_URL, fetched or kept) and then
// CATALOG's entries laid over it. Nothing is read without DISTRO.
func ReadCatalog(ctx context.Context, c *config.Config, log func(string, ...any)) (*image.Catalog, error) {
	if c.Boot.Distro == "" {
		return nil, nil
	}
	j := c.JSONCatalog
	return image.OpenCatalog(ctx, image.CatalogSource{File: c.Catalog, JSONURL: j.URL, JSONCache: j.Cache, Offline: j.Offline, Log: log})
}

// planDownload makes the base image's download: BOOT_FROM's URL, or
// DISTRO's catalog entry, which must boot with BOOT_MODE's firmware and
// come over https or with an https checksum.
func planDownload(c *config.Config, f Facts) (*image.FetchRequest, error) {
	req := image.FetchRequest{URL: c.Boot.URL, SHA256: c.Boot.SHA256}
	if c.Boot.Distro != "" {
		d, err := lookupDistro(c, f)
		if err != nil {
			return nil, err
		}
		// config has checked BOOT_FROM's URL; a catalog entry is checked here.
		if req = d.FetchRequest(""); !image.Verifiable(req) {
			return nil, &config.Error{Var: "DISTRO", Value: c.Boot.Distro, Accepted: "a catalog entry with an https URL or an https checksum file"}
		}
	}
	req.CacheDir = c.CacheDir()
	req.MaxSize, req.MaxUnpacked = c.MediaMaxSize, c.MediaMaxUnpacked
	req.Attempts = c.Hardware.DownloadRetries + 1 // the first try and the retries
	return &req, nil
}

// CheckDistro looks DISTRO up as a start would, for --show-config, which
// makes no plan. A JSON catalog (CATALOG_URL) is left to the start: reading
// it would fetch and keep a copy, and --show-config creates nothing.
func CheckDistro(c *config.Config) error {
	if c.Boot.Distro == "" || c.JSONCatalog.URL != "" {
		return nil
	}
	cat, err := ReadCatalog(context.Background(), c, func(string, ...any) {})
	_, err = lookupDistro(c, Facts{Catalog: cat, CatalogErr: err})
	return err
}

// lookupDistro finds DISTRO in the catalog and checks BOOT_MODE's
// firmware boots it.
func lookupDistro(c *config.Config, f Facts) (image.Distro, error) {
	cat := f.Catalog
	err := f.CatalogErr
	if cat == nil && err == nil {
		cat, err = image.LoadCatalog("") // the built-in one: no file is read
	}
	if je := (*image.JSONCatalogError)(nil); errors.As(err, &je) {
		if c.JSONCatalog.Offline {
			return image.Distro{}, &config.Error{Var: "CATALOG_OFFLINE", Value: "1", Accepted: "0, or 1 with a JSON catalog kept at CATALOG_CACHE (" + c.JSONCatalog.Cache + ") by an earlier start", Err: err}
		}
		return image.Distro{}, &config.Error{Var: "CATALOG_URL", Value: c.JSONCatalog.URL, Accepted: "a JSON catalog in the seed project's format, over https or in a local file (docs/images.md)", Err: err}
	}
	if err != nil {
		return image.Distro{}, &config.Error{Var: "CATALOG", Value: c.Catalog, Accepted: "a readable catalog YAML file (see docs/images.md)", Err: err}
	}
	d, err := cat.Lookup(c.Boot.Distro)
	if err != nil {
		return image.Distro{}, &config.Error{Var: "DISTRO", Value: c.Boot.Distro, Accepted: "a catalog name (vmrunner --list-distros)", Err: err}
	}
	fw := image.FirmwareUEFI
	if c.BootMode == config.BootLegacy {
		fw = image.FirmwareBIOS
	}
	if !d.Boots(fw) {
		return image.Distro{}, &config.Error{Var: "BOOT_MODE", Value: string(c.BootMode), Accepted: fmt.Sprintf("a firmware %s boots with: %v", d.Name, d.Firmware)}
	}
	return d, nil
}

// BootImage is what the host says of a boot image file (Facts, for a
// local BOOT_FROM): its header, and the size and time that name its
// converted copy.
type BootImage struct {
	Path    string // absolute
	Packing string // compressed or an archive (image.Packing): Info is known once unpacked
	Info    image.Info
	Size    int64
	ModTime time.Time
}

// InspectBootImage reads a local BOOT_FROM for Facts; nil without one. An
// image that names any other file or address, or contradicts
// BOOT_FROM_FORMAT, is refused with a *config.Error.
func InspectBootImage(c *config.Config) (*BootImage, error) {
	if c.Boot.Path == "" {
		return nil, nil
	}
	path, err := absPath(c.Boot.Path)
	if err != nil {
		return nil, err
	}
	if c.Boot.Format != string(image.FormatRaw) {
		// A compressed image or an archive is unpacked into the cache at
		// start, as a download is, and inspected then; a file pinned as
		// raw is taken as it is.
		kind, err := image.Packing(path)
		if err != nil {
			return nil, &config.Error{Var: "BOOT_FROM", Value: c.Boot.Path, Accepted: "a readable local image file", Err: err}
		}
		if kind != "" {
			st, err := os.Stat(path)
			if err != nil {
				return nil, err
			}
			return &BootImage{Path: path, Packing: kind, Size: st.Size(), ModTime: st.ModTime()}, nil
		}
	}
	return inspectBootImage(c, path)
}

// inspectBootImage reads the user's image (BOOT_FROM or its download) and
// refuses one that refers to anything outside itself, or whose header
// contradicts BOOT_FROM_FORMAT.
func inspectBootImage(c *config.Config, path string) (*BootImage, error) {
	variable, value := "BOOT_FROM", path
	switch {
	case c.Boot.Distro != "":
		variable, value = "DISTRO", c.Boot.Distro
	case c.Boot.URL != "":
		value = c.Boot.URL
	}
	var info image.Info
	var err error
	if c.Boot.Format != "" {
		info, err = image.InspectAs(path, image.Format(c.Boot.Format))
	} else {
		info, err = image.Inspect(path)
	}
	if mm := (*image.FormatMismatchError)(nil); errors.As(err, &mm) {
		return nil, &config.Error{Var: "BOOT_FROM_FORMAT", Value: c.Boot.Format,
			Accepted: fmt.Sprintf("the format of BOOT_FROM %s (%s), or unset to tell it from the content", value, mm.Found), Err: err}
	}
	if err == nil {
		err = info.SelfContained(path)
	}
	if err != nil {
		return nil, &config.Error{Var: variable, Value: value, Accepted: selfContained, Err: err}
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	return &BootImage{Path: path, Info: info, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// BaseChoice is what a boot image becomes: an installer CD with a blank
// disk, or the base the VM's disk overlays, the image itself or its qcow2
// copy.
type BaseChoice struct {
	// UnpackFrom is a packed image unpacked at start (Packing says how);
	// the rest of the choice is made then, as for a download.
	UnpackFrom, Packing string
	CDROM               string     // an ISO: the installer CD
	Path                string     // the disk's base
	Info                image.Info // Path's header; for a copy to make, qcow2 of the image's size
	// ConvertFrom is the image qemu-img converts into Path first, as
	// FromFormat; "": Path is the image.
	ConvertFrom string
	FromFormat  image.Format
}

// chooseBase decides what img becomes. QEMU could back an overlay with
// vmdk, vhdx, vhd or vdi, but their drivers are slower and less tested
// than qcow2's, so such an image is converted once into cacheDir, named by
// its path, size and modification time: an edited source is converted
// again rather than served stale.
func chooseBase(img BootImage, cacheDir string) BaseChoice {
	if img.Packing != "" {
		return BaseChoice{UnpackFrom: img.Path, Packing: img.Packing}
	}
	switch f := img.Info.Format; {
	case f == image.FormatISO:
		return BaseChoice{CDROM: img.Path}
	case image.NeedsConversion(f):
		key := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", img.Path, img.Size, img.ModTime.UnixNano()))
		return BaseChoice{
			Path:        filepath.Join(cacheDir, fmt.Sprintf("converted-%x-%s.qcow2", key[:8], filepath.Base(img.Path))),
			Info:        image.Info{Format: image.FormatQcow2, VirtualSize: img.Info.VirtualSize},
			ConvertFrom: img.Path,
			FromFormat:  f,
		}
	}
	return BaseChoice{Path: img.Path, Info: img.Info}
}

// baseImage brings the base image to a form QEMU backs an overlay with:
// the plan's choice for a local BOOT_FROM; for a download, the same choice
// made once it is fetched (verified, cached) and inspected. A copy the
// choice calls for is converted.
func (p *Plan) baseImage(ctx context.Context, t Tools, out *Prepared) error {
	b := p.Base
	// A downloaded or unpacked image is known only now: inspect it and
	// choose again, as MakePlan did for a local one.
	rechoose := func(path string) error {
		img, err := inspectBootImage(p.Config, path)
		if err != nil {
			return err
		}
		choice := chooseBase(*img, p.Config.CacheDir())
		b = &choice
		return nil
	}
	if d := p.Download; d != nil {
		req := *d
		req.Progress, req.Log = t.Progress, t.Log
		got, err := image.Fetch(ctx, req)
		if err != nil {
			return p.downloadError(err)
		}
		if err := rechoose(got); err != nil {
			return err
		}
	}
	if b != nil && b.UnpackFrom != "" {
		got, err := image.Unpacked(ctx, b.UnpackFrom, p.Config.CacheDir(), p.Config.MediaMaxUnpacked, t.Log)
		if err != nil {
			return p.unpackError(err)
		}
		if err := rechoose(got); err != nil {
			return err
		}
	}
	if b == nil {
		return nil
	}
	if b.ConvertFrom != "" {
		if err := os.MkdirAll(filepath.Dir(b.Path), 0o755); err != nil {
			return err
		}
		run := func(args []string) error {
			_, err := qemuImg(ctx, t.Run, args...)
			return err
		}
		if err := image.Convert(ctx, b.FromFormat, b.ConvertFrom, b.Path, run); err != nil {
			return fmt.Errorf("converting %s from %s: %w", b.ConvertFrom, b.FromFormat, err)
		}
		// The copy is ours, made by qemu-img from a checked source.
		info, err := image.Inspect(b.Path)
		if err != nil {
			return err
		}
		made := *b
		made.Info = info
		b = &made
	}
	out.use(*b, FileExists(p.Paths.Disk))
	return nil
}

// use records the base the VM's disk is made on, or the installer CD;
// QEMUSpec tells QEMU how to open them. diskExists: the VM's disk is there
// from an earlier run (the system is installed, or half so).
func (out *Prepared) use(b BaseChoice, diskExists bool) {
	if b.CDROM != "" {
		out.CDROM, out.Installed = b.CDROM, diskExists
		return
	}
	info := b.Info
	out.BasePath, out.Base = b.Path, &info
}

// downloadError makes a download's failure a configuration error when the
// configuration must change for it to succeed: the URL, the catalog entry
// or a size cap.
func (p *Plan) downloadError(err error) error {
	c := p.Config
	var le *image.LimitError
	switch {
	case errors.As(err, &le), errors.As(err, new(*image.ArchiveError)):
		return p.unpackError(err)
	case !errors.Is(err, image.ErrBadURL):
		return err
	case c.Boot.Distro != "":
		return &config.Error{Var: "DISTRO", Value: c.Boot.Distro, Accepted: "an entry whose URL and checksum source answer (fix it with CATALOG)", Err: err}
	}
	return &config.Error{Var: "BOOT_FROM", Value: c.Boot.URL, Accepted: "an http(s) URL that serves the image", Err: err}
}

// unpackError makes an unpacking's failure a configuration error when
// the configuration must change: a size cap, or an archive that holds no
// single bootable disk (or a link, or a name leaving it).
func (p *Plan) unpackError(err error) error {
	c := p.Config
	var le *image.LimitError
	if errors.As(err, &le) {
		return &config.Error{Var: le.Var, Value: fmt.Sprint(le.Limit), Accepted: "a size (bytes) the image fits in", Err: err}
	}
	if errors.As(err, new(*image.ArchiveError)) {
		variable, value := "BOOT_FROM", c.Boot.Path
		switch {
		case c.Boot.Distro != "":
			variable, value = "DISTRO", c.Boot.Distro
		case c.Boot.URL != "":
			value = c.Boot.URL
		}
		return &config.Error{Var: variable, Value: value, Accepted: "an image, compressed or not, or an archive (zip, 7z, tar, OVA) holding one disk image and no links", Err: err}
	}
	return err
}
