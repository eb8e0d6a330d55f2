// Package certs provides the TLS certificate of vmrunner's HTTPS services
// (Redfish, the web console): the user's own, or a self-signed one made
// once and kept in the state folder so clients can pin it across restarts.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File names of the self-signed pair in the state folder.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// Source says where the certificate comes from.
type Source struct {
	// CertPath and KeyPath are a user's PEM pair; both or neither.
	CertPath, KeyPath string
	// Dir keeps the self-signed pair when no user pair is given.
	Dir string
	// Names are DNS names or IP addresses the self-signed certificate
	// covers besides localhost, 127.0.0.1, ::1 and this host's name.
	Names []string
}

// Load returns the user's pair, or the self-signed pair kept in Dir, made
// on first use. Fingerprint is the certificate's SHA-256, for the log.
func Load(s Source) (cert tls.Certificate, fingerprint string, err error) {
	certPath, keyPath := s.CertPath, s.KeyPath
	if certPath == "" && keyPath == "" {
		certPath, keyPath = filepath.Join(s.Dir, CertFile), filepath.Join(s.Dir, KeyFile)
		if _, err := os.Stat(certPath); errors.Is(err, fs.ErrNotExist) {
			if err := makeSelfSigned(certPath, keyPath, s.Names); err != nil {
				return tls.Certificate{}, "", fmt.Errorf("making a self-signed certificate in %s: %w", s.Dir, err)
			}
		}
	}
	cert, err = tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("loading TLS pair %s, %s: %w", certPath, keyPath, err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	return cert, hex.EncodeToString(sum[:]), nil
}

// ServerConfig is the TLS configuration every HTTPS service uses.
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func makeSelfSigned(certPath, keyPath string, names []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vmrunner", Organization: []string{"vmrunner self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	// The pair is shared by every HTTPS service, so which one makes it
	// first must not change what it covers: the host's name is added here.
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	for _, n := range slices.Compact(slices.Sorted(slices.Values(names))) {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if n != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// The key is written first and the certificate last: a pair is
	// complete only when the certificate exists, which is what Load checks.
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return err
	}
	return writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// writeNew writes data to path through a temporary file, 0600, never
// following a symlink planted at path.
func writeNew(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tls-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
