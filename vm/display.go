package vm

import (
	"errors"
	"io/fs"
	"os"

	"github.com/vmrunner/vmrunner/cloudinit"
	"github.com/vmrunner/vmrunner/config"
)

// vncPassword writes the password QEMU's secret object reads and makes the
// folder of the web console's socket, which only vmrunner (and QEMU's
// user, see QEMUFiles) may enter: that listener has no VNC auth of its own.
// Both are the VM's, kept across runs; the socket is each run's.
func (p *Plan) vncPassword(out *Prepared) error {
	if p.Spec.Display == nil {
		return nil
	}
	made, err := privateDir(p.Paths.VNCDir)
	if err != nil {
		return err
	}
	if made {
		out.c.onFailure("VNC socket folder", func() error { return os.Remove(p.Paths.VNCDir) })
	}
	pw := p.Config.Console.VNCPassword
	if pw == "" {
		b, err := readPrivate(p.Paths.VNCPassword, config.MaxVNCPassword+1)
		switch {
		case err == nil && len(b) > 0 && len(b) <= config.MaxVNCPassword:
			pw = string(b)
		case err == nil || errors.Is(err, fs.ErrNotExist):
			if pw, err = cloudinit.NewPassword(config.MaxVNCPassword); err != nil {
				return err
			}
			out.VNCPasswordNew = true
		default:
			return err
		}
	}
	out.VNCPassword = pw
	return writePrivate(p.Paths.VNCPassword, []byte(pw))
}

// SaveVNCPassword keeps pw as the VNC password of the next starts (a
// password changed while the VM runs).
func (p Paths) SaveVNCPassword(pw string) error { return writePrivate(p.VNCPassword, []byte(pw)) }
