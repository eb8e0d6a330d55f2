package vm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/image"
)

// baseImage brings the base image to a form QEMU backs an overlay with:
// downloaded (verified, cached), converted when QEMU should not back an
// overlay with its format, or, for an ISO, attached as an installer CD
// with a blank disk.
func (p *Plan) baseImage(ctx context.Context, t Tools, out *Prepared) error {
	path := p.BasePath
	if d := p.Config.Boot.Download; d != nil {
		req := *d
		req.Progress, req.Log = t.Progress, t.Log
		got, err := image.Fetch(ctx, req)
		if errors.Is(err, image.ErrBadURL) {
			return p.downloadError(err)
		}
		if err != nil {
			return err
		}
		path = got
	}
	if path == "" {
		return nil
	}
	f, err := image.Detect(path)
	if err != nil {
		return &config.Error{Var: "BOOT_FROM", Value: path, Accepted: "a disk image (qcow2, raw, vmdk, vhdx, vdi) or an ISO; unpack compressed local files first", Err: err}
	}
	switch {
	case f == image.FormatISO:
		out.CDROM = path
	case image.NeedsConversion(f):
		dst, err := p.convertedPath(path)
		if err != nil {
			return err
		}
		run := func(args []string) error {
			_, err := t.Run(exec.Command("qemu-img", args...))
			return err
		}
		if err := image.Convert(ctx, f, path, dst, run); err != nil {
			return fmt.Errorf("converting %s from %s: %w", path, f, err)
		}
		out.BasePath = dst
	default:
		out.BasePath = path
	}
	return nil
}

func (p *Plan) downloadError(err error) error {
	c := p.Config
	if c.Boot.Distro != "" {
		return &config.Error{Var: "DISTRO", Value: c.Boot.Distro, Accepted: "an entry whose URL and checksum source answer (fix it with CATALOG)", Err: err}
	}
	return &config.Error{Var: "BOOT_FROM", Value: c.Boot.Download.URL, Accepted: "an http(s) URL that serves the image", Err: err}
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
