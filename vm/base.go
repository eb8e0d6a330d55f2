package vm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/image"
)

// selfContained is what BOOT_FROM must be, said in every refusal.
const selfContained = "a self-contained disk image (qcow2, raw, vmdk, vhdx, vpc, vdi) or an ISO: no backing file, external data file, " +
	"extent in another file or parent disk (flatten one with qemu-img convert -O qcow2 IN OUT); unpack compressed local files first"

// ReadCatalog is the catalog DISTRO is looked up in: the built-in one
// with CATALOG's entries laid over it. Nothing is read without DISTRO.
func ReadCatalog(c *config.Config) (*image.Catalog, error) {
	if c.Boot.Distro == "" {
		return nil, nil
	}
	return image.LoadCatalog(c.Catalog)
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

// lookupDistro finds DISTRO in the catalog and checks BOOT_MODE's
// firmware boots it.
func lookupDistro(c *config.Config, f Facts) (image.Distro, error) {
	cat := f.Catalog
	err := f.CatalogErr
	if cat == nil && err == nil {
		cat, err = image.LoadCatalog("") // the built-in one: no file is read
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

// baseImage brings the base image to a form QEMU backs an overlay with:
// downloaded (verified, cached), inspected (an image that names any other
// file or address is refused before anything is made or converted),
// converted when QEMU should not back an overlay with its format, or, for
// an ISO, attached as an installer CD with a blank disk.
func (p *Plan) baseImage(ctx context.Context, t Tools, out *Prepared) error {
	path := p.BasePath
	if d := p.Download; d != nil {
		req := *d
		req.Progress, req.Log = t.Progress, t.Log
		got, err := image.Fetch(ctx, req)
		if err != nil {
			return p.downloadError(err)
		}
		path = got
	}
	if path == "" {
		return nil
	}
	info, err := p.inspectBase(path)
	if err != nil {
		return err
	}
	switch {
	case info.Format == image.FormatISO:
		out.useISO(path, FileExists(p.Paths.Disk))
		return nil
	case image.NeedsConversion(info.Format):
		dst, err := p.convertedPath(path)
		if err != nil {
			return err
		}
		run := func(args []string) error {
			_, err := qemuImg(ctx, t.Run, args...)
			return err
		}
		if err := image.Convert(ctx, info.Format, path, dst, run); err != nil {
			return fmt.Errorf("converting %s from %s: %w", path, info.Format, err)
		}
		// The copy is ours, made by qemu-img from a checked source.
		if info, err = image.Inspect(dst); err != nil {
			return err
		}
		path = dst
	}
	out.useBase(path, info)
	return nil
}

// useBase records the base the VM's disk is made on; QEMUSpec tells QEMU
// how to open it.
func (out *Prepared) useBase(path string, info image.Info) {
	out.BasePath, out.Base = path, &info
}

// inspectBase reads the user's image (BOOT_FROM or its download) and
// refuses one that refers to anything outside itself, or whose header
// contradicts BOOT_FROM_FORMAT.
func (p *Plan) inspectBase(path string) (image.Info, error) {
	c := p.Config
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
		return image.Info{}, &config.Error{Var: "BOOT_FROM_FORMAT", Value: c.Boot.Format,
			Accepted: fmt.Sprintf("the format of BOOT_FROM %s (%s), or unset to tell it from the content", value, mm.Found), Err: err}
	}
	if err == nil {
		err = info.SelfContained(path)
	}
	if err != nil {
		return image.Info{}, &config.Error{Var: variable, Value: value, Accepted: selfContained, Err: err}
	}
	return info, nil
}

// downloadError makes a download's failure a configuration error when the
// configuration must change for it to succeed: the URL, the catalog entry
// or a size cap.
func (p *Plan) downloadError(err error) error {
	c := p.Config
	var le *image.LimitError
	switch {
	case errors.As(err, &le):
		return &config.Error{Var: le.Var, Value: fmt.Sprint(le.Limit), Accepted: "a size (bytes) the image fits in", Err: err}
	case !errors.Is(err, image.ErrBadURL):
		return err
	case c.Boot.Distro != "":
		return &config.Error{Var: "DISTRO", Value: c.Boot.Distro, Accepted: "an entry whose URL and checksum source answer (fix it with CATALOG)", Err: err}
	}
	return &config.Error{Var: "BOOT_FROM", Value: c.Boot.URL, Accepted: "an http(s) URL that serves the image", Err: err}
}

// convertedPath names a local image's converted copy in the cache by the
// source's path, size and modification time, so an edited source is
// converted again rather than served stale.
func (p *Plan) convertedPath(src string) (string, error) {
	st, err := os.Stat(src)
	if err != nil {
		return "", err
	}
	key := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", src, st.Size(), st.ModTime().UnixNano()))
	dir := p.Config.CacheDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Join(dir, fmt.Sprintf("converted-%x-%s.qcow2", key[:8], filepath.Base(src))), nil
}
