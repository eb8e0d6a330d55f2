package webconsole

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/certs"
	"github.com/vmrunner/vmrunner/config"
)

func TestFromConfig(t *testing.T) {
	data := t.TempDir()
	state := filepath.Join(data, "vms", "vm")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	c := &config.Config{DataDir: data, GuestName: "vm", Console: config.Console{Graphics: config.GraphicsNoVNC,
		NoVNC: config.NoVNC{Port: 6080, Username: "user", Dir: "/usr/share/novnc"}}}
	got, fp, err := FromConfig(c, "vncpass1", &fakeVM{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if got.Addr != ":6080" || got.Username != "user" || got.Password != "vncpass1" || got.Dir != "/usr/share/novnc" || got.TLS == nil || len(fp) != 64 {
		t.Errorf("defaults: %+v, fingerprint %q", got, fp)
	}
	if _, err := os.Stat(filepath.Join(state, certs.CertFile)); err != nil {
		t.Errorf("no self-signed certificate kept in the state folder: %v", err)
	}
	_, fp2, _ := FromConfig(c, "vncpass1", &fakeVM{}, zap.NewNop())
	if fp2 != fp {
		t.Errorf("a second start made a new certificate: %s, then %s", fp, fp2)
	}
	c.Console.NoVNC.Password = "own web password"
	if got, _, _ := FromConfig(c, "vncpass1", &fakeVM{}, zap.NewNop()); got.Password != "own web password" {
		t.Errorf("NOVNC_PASSWORD ignored: %q", got.Password)
	}
}
