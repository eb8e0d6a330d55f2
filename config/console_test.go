package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// novncDir is a stand-in for /usr/share/novnc, which the unit tests do not
// need installed.
func novncDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vnc.html"), []byte("<html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadConsole(t *testing.T) {
	dir := novncDir(t)
	tests := []struct {
		env     map[string]string
		port    int
		console Console
	}{
		{map[string]string{}, 0, Console{Graphics: GraphicsNone}},
		{map[string]string{"GRAPHICS": "none", "VNC_PASSWORD": "far-too-long-ignored"}, 0, Console{Graphics: GraphicsNone}},
		{map[string]string{"GRAPHICS": "vnc"}, 5900, Console{Graphics: GraphicsVNC, VNCListen: "0.0.0.0"}},
		{map[string]string{"GRAPHICS": "VNC", "VNC_PORT": "5907", "VNC_LISTEN": "::1", "VNC_KEYMAP": "de-ch", "VNC_PASSWORD": "12345678"},
			5907, Console{Graphics: GraphicsVNC, VNCListen: "::1", Keymap: "de-ch", VNCPassword: "12345678"}},
		{map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": dir}, 0, Console{Graphics: GraphicsNoVNC, VNCListen: "0.0.0.0",
			NoVNC: NoVNC{Port: 6080, Username: "user", Dir: dir}}},
		{map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": dir, "NOVNC_PORT": "443", "NOVNC_USERNAME": "ops",
			"NOVNC_PASSWORD": "a long web password: with spaces", "VNC_PASSWORD": "short"},
			0, Console{Graphics: GraphicsNoVNC, VNCListen: "0.0.0.0", VNCPassword: "short",
				NoVNC: NoVNC{Port: 443, Username: "ops", Password: "a long web password: with spaces", Dir: dir}}},
	}
	for _, tc := range tests {
		t.Run(envName(tc.env), func(t *testing.T) {
			c := mustLoad(t, tc.env)
			if c.VNCPort != tc.port || c.Console != tc.console {
				t.Errorf("VNCPort %d, Console %+v\nwant %d, %+v", c.VNCPort, c.Console, tc.port, tc.console)
			}
		})
	}
}

func TestLoadConsoleBad(t *testing.T) {
	dir := novncDir(t)
	tests := []struct {
		env             map[string]string
		name, value, in string
	}{
		{map[string]string{"GRAPHICS": "spice"}, "GRAPHICS", "spice", "none, vnc or novnc"},
		{map[string]string{"GRAPHICS": "vnc", "VNC_PASSWORD": "123456789"}, "VNC_PASSWORD", "(9 characters)", "only the first 8"},
		{map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": dir, "VNC_PASSWORD": "twelve chars"}, "VNC_PASSWORD", "(12 characters)", "at most 8"},
		{map[string]string{"GRAPHICS": "vnc", "VNC_PASSWORD": "pa\nss"}, "VNC_PASSWORD", "(hidden)", "printable ASCII"},
		{map[string]string{"GRAPHICS": "vnc", "VNC_PASSWORD": "pässwd"}, "VNC_PASSWORD", "(hidden)", "printable ASCII"},
		{map[string]string{"GRAPHICS": "vnc", "VNC_LISTEN": "localhost"}, "VNC_LISTEN", "localhost", "an IP address"},
		{map[string]string{"GRAPHICS": "vnc", "VNC_KEYMAP": "klingon"}, "VNC_KEYMAP", "klingon", "de-ch"},
		{map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": dir, "VNC_KEYMAP": "../x"}, "VNC_KEYMAP", "../x", "layouts"},
		{map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": dir, "NOVNC_PORT": "0"}, "NOVNC_PORT", "0", "1 to 65535"},
		{map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": dir, "NOVNC_USERNAME": "a:b"}, "NOVNC_USERNAME", "a:b", "without ':'"},
		{map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": dir, "NOVNC_PASSWORD": "x\ry"}, "NOVNC_PASSWORD", "(hidden)", "no control"},
		{map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": t.TempDir()}, "NOVNC_DIR", "", "novnc package"},
		{map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": dir, "NOVNC_TLS_CERT": "/etc/hostname"}, "NOVNC_TLS_CERT", "/etc/hostname", "together with NOVNC_TLS_KEY"},
		{map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": dir, "NOVNC_TLS_CERT": "/nonexistent/c", "NOVNC_TLS_KEY": "/nonexistent/k"}, "NOVNC_TLS_KEY", "/nonexistent/k", "readable PEM"},
		{map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": dir, "NOVNC_PORT": "2222"}, "NOVNC_PORT", "2222", "SSH_PORT"},
		{map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": dir, "PORT_FWD": "6080:80"}, "PORT_FWD", "6080:80/tcp", "NOVNC_PORT"},
	}
	for _, tc := range tests {
		t.Run(envName(tc.env), func(t *testing.T) {
			value := tc.value
			if tc.name == "NOVNC_DIR" {
				value = tc.env["NOVNC_DIR"]
			}
			e := wantError(t, tc.env, tc.name, value, tc.in)
			if pw := tc.env["VNC_PASSWORD"] + tc.env["NOVNC_PASSWORD"]; pw != "" && strings.Contains(e.Error(), pw) {
				t.Errorf("the error shows the password: %v", e)
			}
		})
	}
}

func TestEffectiveHidesConsolePasswords(t *testing.T) {
	c := mustLoad(t, map[string]string{"GRAPHICS": "novnc", "NOVNC_DIR": novncDir(t), "VNC_PASSWORD": "vncpw123", "NOVNC_PASSWORD": "webpw-secret"})
	for _, kv := range c.Effective() {
		if strings.Contains(kv[1], "vncpw123") || strings.Contains(kv[1], "webpw-secret") {
			t.Errorf("--print-config shows a password: %s=%s", kv[0], kv[1])
		}
	}
}

func TestCheckVNCPassword(t *testing.T) {
	for pw, ok := range map[string]bool{"a": true, "12345678": true, "p@ss w0r": true, "": false, "123456789": false, "tab\there": false, "ü": false} {
		err := CheckVNCPassword(pw)
		if (err == nil) != ok {
			t.Errorf("CheckVNCPassword(%q) = %v, want ok %v", pw, err, ok)
		}
		if err != nil && pw != "" && strings.Contains(err.Error(), pw) {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}
