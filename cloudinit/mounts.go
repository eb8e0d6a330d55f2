package cloudinit

import (
	"bytes"
	"fmt"
)

// Mount is a shared folder the guest mounts at boot.
type Mount struct {
	Tag      string // the device's mount tag
	Target   string // guest path; config allows only [A-Za-z0-9._+@-/] in it
	Virtiofs bool   // else 9p
	ReadOnly bool
}

// FstabLine is the guest's /etc/fstab entry for m (also what the docs show
// for guests without cloud-init). nofail: a missing share must not stop
// the guest's boot.
func (m Mount) FstabLine() string {
	if m.Virtiofs {
		opts := "nofail"
		if m.ReadOnly {
			opts += ",ro"
		}
		return fmt.Sprintf("%s %s virtiofs %s 0 0", m.Tag, m.Target, opts)
	}
	opts := "trans=virtio,version=9p2000.L,msize=262144,nofail"
	if m.ReadOnly {
		opts += ",ro"
	}
	return fmt.Sprintf("%s %s 9p %s 0 0", m.Tag, m.Target, opts)
}

// mountScript adds each share to /etc/fstab (once: a vendor script runs
// once per instance, the fstab entry mounts it on every later boot) and
// mounts it now. A vendor script rather than cloud-config mounts: a
// user-data mounts: key would replace a built-in one, and cloud-init's
// mounts module takes a bare tag for a /dev name. Always exits 0, so a
// share that fails to mount leaves cloud-init's status "done".
func mountScript(mounts []Mount) []byte {
	var b bytes.Buffer
	b.WriteString("#!/bin/sh\n# vmrunner: shared folders (FILESYSTEM_*).\n")
	for _, m := range mounts {
		fmt.Fprintf(&b, "mkdir -p '%s'\n", m.Target)
		fmt.Fprintf(&b, "grep -q '^%s ' /etc/fstab || echo '%s' >>/etc/fstab\n", m.Tag, m.FstabLine())
		fmt.Fprintf(&b, "mountpoint -q '%s' || mount '%s' || echo 'vmrunner: could not mount %s on %s' >&2\n", m.Target, m.Target, m.Tag, m.Target)
	}
	b.WriteString("exit 0\n")
	return b.Bytes()
}
