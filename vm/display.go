package vm

import (
	"crypto/rand"
	"errors"
	"io/fs"
	"os"

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
			pw, out.VNCPasswordNew = NewVNCPassword(), true
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

// NewVNCPassword makes an 8-character password (VNC auth's whole length)
// from letters and digits without look-alikes: about 46 bits.
func NewVNCPassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, config.MaxVNCPassword)
	for i := range b {
		b[i] = alphabet[randIndex(len(alphabet))]
	}
	return string(b)
}

// randIndex is uniform in [0, n) by rejection sampling.
func randIndex(n int) int {
	var c [1]byte
	for {
		if _, err := rand.Read(c[:]); err != nil {
			panic(err) // crypto/rand does not fail on Linux
		}
		if int(c[0]) < 256-256%n {
			return int(c[0]) % n
		}
	}
}
