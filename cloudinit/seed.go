// Package cloudinit builds the NoCloud seed that vmrunner attaches to a VM as
// a CD with volume id "cidata".
package cloudinit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Seed is the content of one VM's NoCloud seed.
type Seed struct {
	Hostname string // local-hostname
	User     string
	Shell    string // User's login shell; "": /bin/bash
	// Password is plain text; only its hash is written. Empty with SSH
	// keys: the password is locked and SSH password login is off.
	Password string
	SSHKeys  []string // authorized keys for User
	// UserData is the user's own user-data file, nil when not given. Files
	// writes it verbatim; check it first with ValidateUserData.
	UserData      []byte
	NetworkConfig []byte // optional NoCloud network-config (v2 YAML), nil when not given
	// Salt is the crypt salt for Password (see NewSalt). The caller persists
	// it so that the seed, and so the instance-id, is stable across restarts.
	Salt string
	// Mounts are the shared folders the guest mounts (a vendor script).
	Mounts []Mount
}

// Names of the files in a NoCloud seed.
const (
	metaDataFile      = "meta-data"
	userDataFile      = "user-data"
	vendorDataFile    = "vendor-data"
	networkConfigFile = "network-config"
)

const cloudConfigHeader = "#cloud-config"

// Files renders the seed's files (name -> content): meta-data, user-data,
// vendor-data, and network-config when used.
//
// vendor-data always carries a script that installs and starts
// qemu-guest-agent (see agentScript).
//
// Without UserData the built-in setup (hostname, the user with sudo and a
// hashed password, SSH keys) is the user-data. With UserData the user's file
// is the user-data and the built-in setup moves to vendor-data: cloud-init
// merges the two with user-data winning per top-level key, so the user can
// replace any part of the setup and keeps the rest. The built-in user is
// also the default user (system_info.default_user), so a user-data
// `users: [default, …]` adds users and keeps it.
func (s Seed) Files() (map[string][]byte, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("cloud-init seed: %w", err)
	}
	setup, err := s.setup()
	if err != nil {
		return nil, fmt.Errorf("rendering cloud-config: %w", err)
	}

	files := map[string][]byte{userDataFile: setup}
	var vendor []vendorPart
	if s.UserData != nil {
		files[userDataFile] = s.UserData
		vendor = append(vendor, vendorPart{"vmrunner-setup.cfg", "text/cloud-config", setup})
	}
	vendor = append(vendor, vendorPart{"vmrunner-guest-agent.sh", "text/x-shellscript", []byte(agentScript)})
	if len(s.Mounts) > 0 {
		vendor = append(vendor, vendorPart{"vmrunner-shares.sh", "text/x-shellscript", mountScript(s.Mounts)})
	}
	if files[vendorDataFile], err = vendorData(vendor); err != nil {
		return nil, fmt.Errorf("rendering vendor-data: %w", err)
	}
	if s.NetworkConfig != nil {
		files[networkConfigFile] = s.NetworkConfig
	}

	meta, err := yaml.Marshal(metaData{
		InstanceID:    instanceID(s.Hostname, files),
		LocalHostname: s.Hostname,
	})
	if err != nil {
		return nil, fmt.Errorf("rendering meta-data: %w", err)
	}
	files[metaDataFile] = meta
	return files, nil
}

func (s Seed) check() error {
	var errs []error
	if s.Hostname == "" {
		errs = append(errs, errors.New("hostname is empty"))
	}
	if s.User == "" {
		errs = append(errs, errors.New("user is empty"))
	}
	// Without a password and without a key nobody could log in; the caller
	// makes up a password then.
	if s.Password == "" && len(s.SSHKeys) == 0 {
		errs = append(errs, errors.New("neither a password nor an SSH key"))
	}
	if !validSalt(s.Salt) {
		errs = append(errs, fmt.Errorf("salt %q is not 1-%d characters of [./0-9A-Za-z]", s.Salt, maxSaltLen))
	}
	return errors.Join(errs...)
}

func validSalt(salt string) bool {
	if salt == "" || len(salt) > maxSaltLen {
		return false
	}
	for _, c := range []byte(salt) {
		if strings.IndexByte(cryptAlphabet, c) < 0 {
			return false
		}
	}
	return true
}

type metaData struct {
	InstanceID    string `yaml:"instance-id"`
	LocalHostname string `yaml:"local-hostname"`
}

type cloudConfig struct {
	PreserveHostname bool       `yaml:"preserve_hostname"`
	Hostname         string     `yaml:"hostname"`
	Users            []user     `yaml:"users"`
	SystemInfo       systemInfo `yaml:"system_info"`
	SSHPwauth        bool       `yaml:"ssh_pwauth"`
	Chpasswd         chpasswd   `yaml:"chpasswd"`
	// ManageEtcHosts maps the hostname to 127.0.1.1 in /etc/hosts, so that
	// it resolves in the guest (sudo warns on every call otherwise).
	ManageEtcHosts bool `yaml:"manage_etc_hosts"`
}

// systemInfo makes the built-in user the image's default user too, so that
// a user-data file with the usual `users: [default, …]` keeps it (without
// this, "default" is the image's own user, e.g. Debian's locked "debian").
type systemInfo struct {
	DefaultUser user `yaml:"default_user"`
}

type user struct {
	Name              string   `yaml:"name"`
	Sudo              string   `yaml:"sudo"`
	Shell             string   `yaml:"shell"`
	LockPasswd        bool     `yaml:"lock_passwd"`
	HashedPasswd      string   `yaml:"hashed_passwd,omitempty"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
}

type chpasswd struct {
	Expire bool `yaml:"expire"`
}

// setup renders the built-in #cloud-config.
func (s Seed) setup() ([]byte, error) {
	u := user{
		Name:              s.User,
		Sudo:              "ALL=(ALL) NOPASSWD:ALL",
		Shell:             "/bin/bash",
		LockPasswd:        true,
		SSHAuthorizedKeys: s.SSHKeys,
	}
	if s.Shell != "" {
		u.Shell = s.Shell
	}
	if s.Password != "" {
		u.LockPasswd, u.HashedPasswd = false, HashPassword(s.Password, s.Salt)
	}
	cfg := cloudConfig{
		PreserveHostname: false,
		Hostname:         s.Hostname,
		Users:            []user{u},
		SystemInfo:       systemInfo{DefaultUser: u},
		SSHPwauth:        s.Password != "",
		Chpasswd:         chpasswd{Expire: false},
		ManageEtcHosts:   true,
	}
	var buf bytes.Buffer
	buf.WriteString(cloudConfigHeader + "\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// instanceID derives the instance-id from the seed's content, so cloud-init
// re-runs its first-boot setup only when that content changes and not on a
// plain restart. Each part is length-prefixed so that moving bytes between
// parts changes the id.
func instanceID(hostname string, files map[string][]byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "local-hostname %d\n%s", len(hostname), hostname)
	for _, name := range []string{userDataFile, vendorDataFile, networkConfigFile} {
		if data, ok := files[name]; ok {
			fmt.Fprintf(h, "%s %d\n", name, len(data))
			h.Write(data)
		}
	}
	return "iid-" + hex.EncodeToString(h.Sum(nil))[:16]
}
