package cloudinit

import (
	"strings"
	"testing"
)

func TestValidateNetworkConfig(t *testing.T) {
	for _, tc := range []struct {
		name, data, wantErr string // wantErr "" means valid
	}{
		{"v2", "version: 2\nethernets:\n  eth0:\n    addresses: [10.0.2.15/24]\n", ""},
		{"v2 wrapped", "network:\n  version: 2\n  ethernets: {}\n", ""},
		{"v1", "version: 1\nconfig:\n  - type: physical\n    name: eth0\n", ""},
		{"disabled", "network: {config: disabled}\n", ""},
		{"bad YAML", "version: 2\nethernets:\n  eth0: [\n", "line 3: YAML"},
		{"not a mapping", "- version: 2\n", "line 1: network-config must be a mapping, got a list"},
		{"no version", "ethernets: {}\n", "has no version"},
		{"version 3", "version: 3\n", `line 1: version must be 1 or 2, got "3"`},
		{"version string", "version: '2'\n", "version must be 1 or 2"},
		{"v1 without config", "version: 1\n", "has no config list"},
		{"v1 config mapping", "version: 1\nconfig:\n  eth0: {}\n", "line 3: config must be a list, got a mapping"},
		{"v2 ethernets list", "version: 2\nethernets:\n  - eth0\n", "line 3: ethernets must be a mapping, got a list"},
		{"network scalar", "network: 2\n", "network must be a mapping"},
		{"empty", "", "file is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateNetworkConfig("nc.yaml", []byte(tc.data))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("no error, want one containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("error %q lacks %q", err, tc.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), "nc.yaml: "):
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

// The built-in user is also cloud-init's default user, so that a user-data
// `users: [default, …]` keeps it.
func TestSetupMakesBuiltinUserTheDefaultUser(t *testing.T) {
	ud := string(mustFiles(t, testSeed())["user-data"])
	for _, want := range []string{"system_info:\n  default_user:\n    name: user\n", "users:\n  - name: user\n"} {
		if !strings.Contains(ud, want) {
			t.Errorf("built-in user-data lacks %q:\n%s", want, ud)
		}
	}
}
