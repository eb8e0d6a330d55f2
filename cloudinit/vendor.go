package cloudinit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime/multipart"
	"net/textproto"
)

// NoAgentMarker is the guest file that stops the built-in vendor script from
// installing or starting qemu-guest-agent: a user-data writes it
// (write_files or bootcmd run before vendor scripts) to opt out.
const NoAgentMarker = "/etc/vmrunner/no-guest-agent"

// agentScript installs qemu-guest-agent with whatever package manager the
// guest has, when it is missing, and starts it. It is a vendor script, not a
// runcmd: a user-data runcmd replaces the built-in one (user-data wins per
// top-level key) but leaves vendor scripts alone. It always exits 0: a guest
// without network or package manager keeps working (cloud-init's status
// stays "done"), just without the agent.
const agentScript = `#!/bin/sh
# vmrunner: the QEMU guest agent (vmrunner exec, status, graceful stop).
# Opt out: have user-data create ` + NoAgentMarker + `.
[ -e ` + NoAgentMarker + ` ] && exit 0
have() { command -v "$1" >/dev/null 2>&1; }
if ! have qemu-ga && [ ! -x /usr/sbin/qemu-ga ] && [ ! -x /usr/bin/qemu-ga ]; then
  if have apt-get; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-guest-agent
  elif have dnf; then dnf install -y -q qemu-guest-agent
  elif have yum; then yum install -y -q qemu-guest-agent
  elif have zypper; then zypper -n -q install qemu-guest-agent
  elif have apk; then apk add -q qemu-guest-agent
  elif have pacman; then pacman -S --noconfirm --needed qemu-guest-agent
  fi || echo "vmrunner: could not install qemu-guest-agent" >&2
fi
if have systemctl; then
  systemctl start qemu-guest-agent
elif have rc-service; then
  rc-update add qemu-guest-agent default; rc-service qemu-guest-agent start
elif have service; then
  service qemu-guest-agent start
fi || echo "vmrunner: could not start qemu-guest-agent" >&2
exit 0
`

// vendorData joins the vendor-data parts into one MIME multipart document,
// cloud-init's way of carrying a cloud-config and a script together. The
// boundary is derived from the parts so that the document, and with it the
// instance-id, stays the same for the same seed.
func vendorData(parts []vendorPart) ([]byte, error) {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%s %d\n", p.contentType, len(p.data))
		h.Write(p.data)
	}
	boundary := "vmrunner-" + hex.EncodeToString(h.Sum(nil))[:32]
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "Content-Type: multipart/mixed; boundary=%q\nMIME-Version: 1.0\n\n", boundary)
	w := multipart.NewWriter(&buf)
	if err := w.SetBoundary(boundary); err != nil {
		return nil, err
	}
	for _, p := range parts {
		pw, err := w.CreatePart(textproto.MIMEHeader{
			"Content-Type":        {p.contentType + `; charset="utf-8"`},
			"Content-Disposition": {fmt.Sprintf("attachment; filename=%q", p.name)},
		})
		if err != nil {
			return nil, err
		}
		pw.Write(p.data)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type vendorPart struct {
	name, contentType string
	data              []byte
}
