package cloudinit

import (
	"bytes"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func testSeed() Seed {
	return Seed{
		Hostname: "vm-1",
		User:     "user",
		Password: "p@ss: #word'\"",
		SSHKeys:  []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHt0ZXN0 me@host: #1"},
		Salt:     "abcdefghABCDEFGH",
	}
}

func mustFiles(t testing.TB, s Seed) map[string][]byte {
	t.Helper()
	files, err := s.Files()
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	return files
}

func TestFilesBuiltinUserData(t *testing.T) {
	for _, password := range []string{"password", testSeed().Password} {
		t.Run(password, func(t *testing.T) {
			s := testSeed()
			s.Password = password
			files := mustFiles(t, s)

			if got, want := slices.Sorted(maps.Keys(files)), []string{"meta-data", "user-data", "vendor-data"}; !slices.Equal(got, want) {
				t.Fatalf("files = %q, want %q", got, want)
			}
			for name, data := range files {
				if bytes.Contains(data, []byte(password)) {
					t.Errorf("%s contains the clear-text password:\n%s", name, data)
				}
			}

			ud := files["user-data"]
			if !bytes.HasPrefix(ud, []byte("#cloud-config\n")) {
				t.Fatalf("user-data does not start with #cloud-config:\n%s", ud)
			}
			if err := ValidateUserData("user-data", ud); err != nil {
				t.Errorf("built-in user-data fails validation: %v", err)
			}

			var got struct {
				PreserveHostname *bool  `yaml:"preserve_hostname"`
				Hostname         string `yaml:"hostname"`
				Users            []struct {
					Name              string   `yaml:"name"`
					Sudo              string   `yaml:"sudo"`
					Shell             string   `yaml:"shell"`
					LockPasswd        *bool    `yaml:"lock_passwd"`
					HashedPasswd      string   `yaml:"hashed_passwd"`
					SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys"`
				} `yaml:"users"`
				SSHPwauth bool `yaml:"ssh_pwauth"`
				Chpasswd  struct {
					Expire *bool `yaml:"expire"`
				} `yaml:"chpasswd"`
				ManageEtcHosts bool `yaml:"manage_etc_hosts"`
			}
			if err := yaml.Unmarshal(ud, &got); err != nil {
				t.Fatalf("user-data is not YAML: %v\n%s", err, ud)
			}
			if got.PreserveHostname == nil || *got.PreserveHostname || got.Hostname != s.Hostname {
				t.Errorf("preserve_hostname/hostname wrong:\n%s", ud)
			}
			if len(got.Users) != 1 {
				t.Fatalf("want exactly one user:\n%s", ud)
			}
			u := got.Users[0]
			if u.Name != s.User || u.Sudo != "ALL=(ALL) NOPASSWD:ALL" || u.Shell != "/bin/bash" {
				t.Errorf("user name/sudo/shell wrong:\n%s", ud)
			}
			if u.LockPasswd == nil || *u.LockPasswd {
				t.Errorf("lock_passwd must be false:\n%s", ud)
			}
			if want := HashPassword(password, s.Salt); u.HashedPasswd != want {
				t.Errorf("hashed_passwd = %q, want %q", u.HashedPasswd, want)
			}
			if !slices.Equal(u.SSHAuthorizedKeys, s.SSHKeys) {
				t.Errorf("ssh_authorized_keys = %q, want %q", u.SSHAuthorizedKeys, s.SSHKeys)
			}
			if !got.SSHPwauth || got.Chpasswd.Expire == nil || *got.Chpasswd.Expire {
				t.Errorf("ssh_pwauth/chpasswd wrong:\n%s", ud)
			}
			if !got.ManageEtcHosts {
				t.Errorf("manage_etc_hosts is not true (the hostname would not resolve in the guest):\n%s", ud)
			}
			if parts := vendorParts(t, files["vendor-data"]); len(parts) != 1 || parts[0].contentType != "text/x-shellscript" || string(parts[0].data) != agentScript {
				t.Errorf("vendor-data without user-data: %+v, want only the agent script", parts)
			}

			var meta map[string]string
			if err := yaml.Unmarshal(files["meta-data"], &meta); err != nil {
				t.Fatalf("meta-data is not YAML: %v", err)
			}
			if !regexp.MustCompile(`^iid-[0-9a-f]{16}$`).MatchString(meta["instance-id"]) || meta["local-hostname"] != s.Hostname || len(meta) != 2 {
				t.Errorf("meta-data wrong:\n%s", files["meta-data"])
			}
		})
	}
}

func TestFilesWithoutKeysOmitsAuthorizedKeys(t *testing.T) {
	s := testSeed()
	s.SSHKeys = nil
	if ud := mustFiles(t, s)["user-data"]; bytes.Contains(ud, []byte("ssh_authorized_keys")) {
		t.Errorf("user-data has ssh_authorized_keys without keys:\n%s", ud)
	}
}

func TestFilesUserDataMovesSetupToVendorData(t *testing.T) {
	builtin := mustFiles(t, testSeed())["user-data"]

	s := testSeed()
	s.UserData = []byte("#!/bin/sh\necho mine\n")
	s.NetworkConfig = []byte("version: 2\nethernets: {}\n")
	files := mustFiles(t, s)

	if got, want := slices.Sorted(maps.Keys(files)), []string{"meta-data", "network-config", "user-data", "vendor-data"}; !slices.Equal(got, want) {
		t.Fatalf("files = %q, want %q", got, want)
	}
	if !bytes.Equal(files["user-data"], s.UserData) {
		t.Errorf("user-data = %q, want the user's file verbatim", files["user-data"])
	}
	parts := vendorParts(t, files["vendor-data"])
	if len(parts) != 2 || parts[0].contentType != "text/cloud-config" || !bytes.Equal(parts[0].data, builtin) {
		t.Errorf("vendor-data parts %+v, want first the built-in setup %q", parts, builtin)
	} else if parts[1].contentType != "text/x-shellscript" || string(parts[1].data) != agentScript {
		t.Errorf("vendor-data's second part %+v, want the agent script", parts[1])
	}
	if !bytes.Equal(files["network-config"], s.NetworkConfig) {
		t.Errorf("network-config = %q, want %q", files["network-config"], s.NetworkConfig)
	}
}

func TestInstanceIDFollowsContent(t *testing.T) {
	id := func(s Seed) string {
		var meta map[string]string
		if err := yaml.Unmarshal(mustFiles(t, s)["meta-data"], &meta); err != nil {
			t.Fatal(err)
		}
		return meta["instance-id"]
	}
	base := id(testSeed())

	tests := []struct {
		desc    string
		change  func(*Seed)
		changes bool
	}{
		{"same inputs", func(*Seed) {}, false},
		{"another ssh key", func(s *Seed) { s.SSHKeys = []string{"ssh-ed25519 AAAAother"} }, true},
		{"no ssh key", func(s *Seed) { s.SSHKeys = nil }, true},
		{"hostname", func(s *Seed) { s.Hostname = "vm-2" }, true},
		{"user", func(s *Seed) { s.User = "admin" }, true},
		{"password", func(s *Seed) { s.Password = "other" }, true},
		{"salt", func(s *Seed) { s.Salt = "saltsalt" }, true},
		{"user-data", func(s *Seed) { s.UserData = []byte("#!/bin/sh\n") }, true},
		{"network-config", func(s *Seed) { s.NetworkConfig = []byte("version: 2\n") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s := testSeed()
			tt.change(&s)
			if got := id(s); (got != base) != tt.changes {
				t.Errorf("instance-id %s, base %s; want changed=%v", got, base, tt.changes)
			}
		})
	}
}

func TestFilesRejectsIncompleteSeed(t *testing.T) {
	tests := []struct {
		desc    string
		change  func(*Seed)
		wantErr string
	}{
		{"no hostname", func(s *Seed) { s.Hostname = "" }, "hostname is empty"},
		{"no user", func(s *Seed) { s.User = "" }, "user is empty"},
		{"no password, no key", func(s *Seed) { s.Password, s.SSHKeys = "", nil }, "neither a password nor an SSH key"},
		{"no salt", func(s *Seed) { s.Salt = "" }, `salt "" is not`},
		{"salt too long", func(s *Seed) { s.Salt = strings.Repeat("a", 17) }, "is not 1-16 characters"},
		{"salt with $", func(s *Seed) { s.Salt = "ab$cd" }, `salt "ab$cd" is not`},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s := testSeed()
			tt.change(&s)
			_, err := s.Files()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Files() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// cloud-init reads YAML 1.1 (PyYAML), where a bare no/on/yes is a boolean;
// such values must come out quoted.
func TestFilesQuotesYAML11Booleans(t *testing.T) {
	s := testSeed()
	s.Hostname = "no"
	s.User = "on"
	files := mustFiles(t, s)
	for _, want := range []string{`hostname: "no"`, `name: "on"`} {
		if !bytes.Contains(files["user-data"], []byte(want)) {
			t.Errorf("user-data lacks %s:\n%s", want, files["user-data"])
		}
	}
	if want := `local-hostname: "no"`; !bytes.Contains(files["meta-data"], []byte(want)) {
		t.Errorf("meta-data lacks %s:\n%s", want, files["meta-data"])
	}
}

// TestFilesKeyOnlyLocksPassword: with SSH keys and no password, the user's
// password is locked and sshd takes no passwords; with a password, both
// work.
func TestFilesKeyOnlyLocksPassword(t *testing.T) {
	for _, tt := range []struct {
		desc, password string
		wantLock       bool
	}{
		{"key only", "", true},
		{"key and password", "s3cret", false},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			s := testSeed()
			s.Password = tt.password
			var got struct {
				SSHPwauth *bool `yaml:"ssh_pwauth"`
				Users     []struct {
					LockPasswd   *bool    `yaml:"lock_passwd"`
					HashedPasswd *string  `yaml:"hashed_passwd"`
					Keys         []string `yaml:"ssh_authorized_keys"`
				} `yaml:"users"`
			}
			if err := yaml.Unmarshal(mustFiles(t, s)["user-data"], &got); err != nil {
				t.Fatal(err)
			}
			if got.SSHPwauth == nil || *got.SSHPwauth != !tt.wantLock {
				t.Errorf("ssh_pwauth = %v, want %v", got.SSHPwauth, !tt.wantLock)
			}
			u := got.Users[0]
			if u.LockPasswd == nil || *u.LockPasswd != tt.wantLock {
				t.Errorf("lock_passwd = %v, want %v", u.LockPasswd, tt.wantLock)
			}
			if (u.HashedPasswd != nil) == tt.wantLock {
				t.Errorf("hashed_passwd = %v with password %q", u.HashedPasswd, tt.password)
			}
			if len(u.Keys) != 1 {
				t.Errorf("authorized keys = %q", u.Keys)
			}
		})
	}
}

func TestSeedShell(t *testing.T) {
	for shell, want := range map[string]string{"": "/bin/bash", "/bin/sh": "/bin/sh", "/usr/bin/zsh": "/usr/bin/zsh"} {
		s := Seed{Hostname: "vm", User: "user", Shell: shell, Password: "pw", Salt: "abcdefgh"}
		files, err := s.Files()
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Users []struct {
				Shell string `yaml:"shell"`
			} `yaml:"users"`
			SystemInfo struct {
				DefaultUser struct {
					Shell string `yaml:"shell"`
				} `yaml:"default_user"`
			} `yaml:"system_info"`
		}
		if err := yaml.Unmarshal(files["user-data"], &cfg); err != nil {
			t.Fatal(err)
		}
		if len(cfg.Users) != 1 || cfg.Users[0].Shell != want || cfg.SystemInfo.DefaultUser.Shell != want {
			t.Errorf("SHELL %q: user-data has %+v, want shell %s", shell, cfg, want)
		}
	}
}
