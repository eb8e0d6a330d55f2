package webconsole

import (
	"fmt"
	"strconv"

	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/certs"
	"github.com/vmrunner/vmrunner/config"
)

// FromConfig is the web console GRAPHICS=novnc asks for. vncPassword is
// the one start-up settled (VNC_PASSWORD, kept or generated), the default
// of NOVNC_PASSWORD. The certificate is the user's pair or the self-signed
// one in the state folder, which Redfish shares; its fingerprint is
// returned for the log.
func FromConfig(c *config.Config, vncPassword string, vm VM, log *zap.Logger) (Config, string, error) {
	n := c.Console.NoVNC
	cert, fingerprint, err := certs.Load(certs.Source{CertPath: n.TLSCert, KeyPath: n.TLSKey, Dir: c.StateDir(), Names: []string{c.GuestName}})
	if err != nil {
		return Config{}, "", fmt.Errorf("web console certificate: %w", err)
	}
	pw := n.Password
	if pw == "" {
		pw = vncPassword
	}
	return Config{Addr: ":" + strconv.Itoa(n.Port), Username: n.Username, Password: pw, Dir: n.Dir,
		TLS: certs.ServerConfig(cert), VM: vm, Log: log}, fingerprint, nil
}
