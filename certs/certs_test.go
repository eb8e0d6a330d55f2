package certs

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

func TestSelfSignedKeptAcrossLoads(t *testing.T) {
	dir := t.TempDir()
	c1, fp1, err := Load(Source{Dir: dir, Names: []string{"vm1", "192.0.2.7"}})
	if err != nil {
		t.Fatal(err)
	}
	_, fp2, err := Load(Source{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if fp1 != fp2 {
		t.Fatalf("second load made a new certificate: %s vs %s", fp1, fp2)
	}
	leaf, err := x509.ParseCertificate(c1.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("vm1"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("192.0.2.7"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if h, err := os.Hostname(); err == nil {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("the host's name: %v", err)
		}
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", st.Mode().Perm())
	}
}

func TestUserPairAndBadPair(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Load(Source{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	user := Source{CertPath: filepath.Join(dir, CertFile), KeyPath: filepath.Join(dir, KeyFile), Dir: t.TempDir()}
	if _, _, err := Load(user); err != nil {
		t.Fatalf("user pair: %v", err)
	}
	if entries, _ := os.ReadDir(user.Dir); len(entries) != 0 {
		t.Errorf("a user pair must not make a self-signed one: %v", entries)
	}
	bad := Source{CertPath: filepath.Join(dir, KeyFile), KeyPath: filepath.Join(dir, KeyFile)}
	if _, _, err := Load(bad); err == nil {
		t.Fatal("a key given as certificate was accepted")
	}
}

func TestPlantedSymlinkNotFollowed(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "victim")
	if err := os.Symlink(target, filepath.Join(dir, KeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(Source{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Fatal("the key was written through a planted symlink")
	}
}
