package config

import (
	"errors"
	"testing"
)

// FuzzLoad feeds arbitrary values to the variables with the most parsing.
// Load must never panic, must fail only with *Error values, and what it
// accepts must be in range.
func FuzzLoad(f *testing.F) {
	f.Add("8080:80,5353:53/udp", "4096", "20G", "52:54:00:12:34:56")
	f.Add("", "max", "1.5T", "")
	f.Add("2222:22", "half", "512M", "ff:ff:ff:ff:ff:ff")
	f.Add(" 1:65535 , ,", "2G", "20GiB", "0200.0000.0001")
	f.Add("a:b/c", "-1", "20", "zz")
	f.Add("8080:80/UDP,8080:80", "1e3", "0.1K", "52-54-00-12-34-56")
	f.Fuzz(func(t *testing.T, portFwd, memory, diskSize, mac string) {
		env := map[string]string{
			"PORT_FWD":    portFwd,
			"MEMORY":      memory,
			"DISK_SIZE":   diskSize,
			"NETWORK_MAC": mac,
		}
		c, err := Load(env, testHost)
		if err != nil {
			if c != nil {
				t.Fatalf("config and error together: %v", err)
			}
			if len(configErrors(err)) == 0 {
				t.Fatalf("error without a *config.Error: %v", err)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Var == "" || ce.Accepted == "" {
				t.Fatalf("bad *config.Error: %#v", ce)
			}
			return
		}
		if c.MemoryMiB < 64 {
			t.Errorf("MEMORY=%q accepted as %d MiB", memory, c.MemoryMiB)
		}
		if c.DiskSize%512 != 0 {
			t.Errorf("DISK_SIZE=%q accepted as %d bytes, not whole sectors", diskSize, c.DiskSize)
		}
		for _, p := range c.PortFwds {
			if p.HostPort < 1 || p.HostPort > 65535 || p.GuestPort < 1 || p.GuestPort > 65535 || (p.Proto != TCP && p.Proto != UDP) {
				t.Errorf("PORT_FWD=%q accepted as %+v", portFwd, p)
			}
			if p.Proto == TCP && p.HostPort == c.SSHPort {
				t.Errorf("PORT_FWD=%q collides with SSH_PORT but was accepted", portFwd)
			}
		}
		if m := c.NICs[0].MAC; m != nil && (len(m) != 6 || m[0]&1 != 0) {
			t.Errorf("NETWORK_MAC=%q accepted as %v", mac, m)
		}
	})
}
