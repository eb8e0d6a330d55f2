package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadRedfish(t *testing.T) {
	const pw = "s3cret-Redfish"
	c := mustLoad(t, map[string]string{})
	if c.Redfish.Enabled {
		t.Errorf("Redfish on by default: %+v", c.Redfish)
	}
	c = mustLoad(t, map[string]string{"REDFISH_ENABLE": "1", "REDFISH_PASSWORD": pw})
	want := Redfish{Enabled: true, Port: 8443, Username: "admin", Password: pw, SystemID: "testhost"}
	if c.Redfish != want {
		t.Errorf("defaults: %+v, want %+v", c.Redfish, want)
	}
	if got := c.Redfish.Addr(); got != ":8443" {
		t.Errorf("Addr() = %q, want :8443 (every address, for docker -p)", got)
	}

	dir := t.TempDir()
	crt, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	for _, p := range []string{crt, key} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c = mustLoad(t, map[string]string{"REDFISH_ENABLE": "yes", "REDFISH_PASSWORD": pw, "REDFISH_PORT": "443",
		"REDFISH_LISTEN": "::1", "REDFISH_USERNAME": "ironic", "REDFISH_SYSTEM_ID": "node-1.a_b",
		"REDFISH_TLS_CERT": crt, "REDFISH_TLS_KEY": key, "GUEST_NAME": "vm1"})
	want = Redfish{Enabled: true, Listen: "::1", Port: 443, Username: "ironic", Password: pw, SystemID: "node-1.a_b", TLSCert: crt, TLSKey: key}
	if c.Redfish != want {
		t.Errorf("set: %+v, want %+v", c.Redfish, want)
	}
	if got := c.Redfish.Addr(); got != "[::1]:443" {
		t.Errorf("Addr() = %q", got)
	}
	// The password never shows in --show-config.
	for _, kv := range c.Effective() {
		if strings.Contains(kv[1], pw) {
			t.Errorf("--show-config shows the Redfish password in %s", kv[0])
		}
	}
	// Off, nothing else is checked.
	mustLoad(t, map[string]string{"REDFISH_ENABLE": "0", "REDFISH_PORT": "x", "REDFISH_PASSWORD": "password"})
}

func TestLoadRedfishBad(t *testing.T) {
	on := func(kv ...string) map[string]string {
		m := map[string]string{"REDFISH_ENABLE": "1", "REDFISH_PASSWORD": "s3cret-Redfish"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		env              map[string]string
		name, value, acc string
	}{
		{map[string]string{"REDFISH_ENABLE": "maybe"}, "REDFISH_ENABLE", "maybe", "yes/no"},
		{map[string]string{"REDFISH_ENABLE": "1"}, "REDFISH_PASSWORD", "", "password of your own"},
		{on("REDFISH_PASSWORD", "password"), "REDFISH_PASSWORD", "********", "default 'password' is refused"},
		{on("REDFISH_PASSWORD", ""), "REDFISH_PASSWORD", "", "password of your own"},
		{on("REDFISH_PASSWORD", "short"), "REDFISH_PASSWORD", "********", "at least 8"},
		{on("REDFISH_PORT", "0"), "REDFISH_PORT", "0", "1 to 65535"},
		{on("REDFISH_PORT", "https"), "REDFISH_PORT", "https", "1 to 65535"},
		{on("REDFISH_LISTEN", "localhost"), "REDFISH_LISTEN", "localhost", "IP address"},
		{on("REDFISH_USERNAME", "a:b"), "REDFISH_USERNAME", "a:b", "without ':'"},
		{on("REDFISH_SYSTEM_ID", "a/b"), "REDFISH_SYSTEM_ID", "a/b", "letters, digits"},
		{on("REDFISH_SYSTEM_ID", "../x"), "REDFISH_SYSTEM_ID", "../x", "letters, digits"},
		{on("REDFISH_TLS_CERT", missing), "REDFISH_TLS_CERT", missing, "REDFISH_TLS_KEY"},
		{on("REDFISH_TLS_CERT", missing, "REDFISH_TLS_KEY", missing), "REDFISH_TLS_KEY", missing, "readable PEM"},
		{on("SSH_PORT", "8443"), "REDFISH_PORT", "8443", "SSH_PORT"},
		{on("PORT_FWD", "8443:443"), "PORT_FWD", "8443:443/tcp", "REDFISH_PORT"},
	}
	for _, tc := range tests {
		t.Run(envName(tc.env), func(t *testing.T) {
			e := wantError(t, tc.env, tc.name, tc.value, tc.acc)
			if strings.Contains(e.Error(), "s3cret") {
				t.Errorf("the error shows the password: %v", e)
			}
		})
	}
}
