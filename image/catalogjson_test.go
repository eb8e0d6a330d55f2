package image

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// seedCatalog is a catalog in the seed project's JSON format: an entry
// replacing a built-in name, a new installer ISO, an arm64 one, one for
// an architecture vmrunner lacks and one pinned with sha512.
const seedCatalog = `{
  "meta": {"api_version": "v1", "generated_at": "2026-11-01T00:00:00Z", "count": 5},
  "images": [
    {"id": "debian-12", "name": "Debian 12 from a mirror", "category": "linux", "distro": "debian",
     "version": "12", "arch": "amd64", "release_type": "stable", "status": "supported",
     "url": "https://mirror.example.com/debian-12.qcow2",
     "checksum": {"algorithm": "sha256", "value": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
     "eol": {"standard": "2028-06-30", "is_rolling": false}},
    {"id": "ubuntu-24.04-server", "name": "Ubuntu 24.04.4 LTS", "edition": "Server", "category": "linux",
     "version": "24.04.4", "arch": "amd64", "status": "supported",
     "url": "https://releases.example.com/ubuntu-24.04.4-live-server-amd64.iso", "homepage": "https://ubuntu.com/",
     "checksum": {"algorithm": "sha256", "value": "e907d92eeec9df64163a7e454cbc8d7755e8ddc7ed42f99dbc80c40f1a138433"},
     "eol": {"standard": "2029-05-31", "extended": "2036-05-31"}},
    {"id": "fedora-42-arm", "name": "Fedora 42", "category": "linux", "version": "42", "arch": "arm64",
     "status": "supported", "url": "https://example.com/f.iso"},
    {"id": "riscv-one", "name": "RISC-V", "category": "linux", "version": "1", "arch": "riscv64",
     "status": "supported", "url": "https://example.com/r.img"},
    {"id": "sha512-only", "name": "Pinned with sha512", "category": "linux", "version": "1", "arch": "x86_64",
     "status": "supported", "url": "https://example.com/s.img",
     "checksum": {"algorithm": "sha512", "value": "ab12"}}
  ]
}`

// catalogServer serves body at /catalog.json and counts the GETs.
func catalogServer(t *testing.T, status *atomic.Int32, body *atomic.Value) (*httptest.Server, *atomic.Int32) {
	var gets atomic.Int32
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		if code := status.Load(); code != 0 {
			w.WriteHeader(int(code))
			return
		}
		w.Write([]byte(body.Load().(string)))
	}))
	t.Cleanup(s.Close)
	return s, &gets
}

func TestOpenCatalogJSON(t *testing.T) {
	var status atomic.Int32
	var body atomic.Value
	body.Store(seedCatalog)
	s, gets := catalogServer(t, &status, &body)
	cache := filepath.Join(t.TempDir(), "cache", "catalog.json")
	var logged []string
	src := CatalogSource{JSONURL: s.URL + "/catalog.json", JSONCache: cache, Client: s.Client(),
		Log: func(msg string, _ ...any) { logged = append(logged, msg) }}

	c, err := OpenCatalog(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := c.Lookup("debian-12"); err != nil || d.URL != "https://mirror.example.com/debian-12.qcow2" || d.ChecksumURL != "" || d.SHA256 == "" {
		t.Errorf("debian-12 = %+v, %v: want the JSON entry replacing the built-in one whole", d, err)
	}
	iso, err := c.Lookup("ubuntu-24.04-server")
	if err != nil || iso.Kind() != "iso" || iso.Description != "Ubuntu 24.04.4 LTS Server" {
		t.Errorf("ubuntu-24.04-server = %+v, %v", iso, err)
	}
	if _, err := c.Lookup("ubuntu-2404"); err != nil {
		t.Errorf("a built-in entry the JSON catalog lacks is gone: %v", err)
	}
	if arm, err := c.Lookup("fedora-42-arm"); err != nil || arm.Arch != ArchAArch64 || arm.Boots(FirmwareBIOS) {
		t.Errorf("fedora-42-arm = %+v, %v; want an aarch64 UEFI entry", arm, err)
	}
	for name, why := range map[string]string{"riscv-one": "it is for riscv64", "sha512-only": "its checksum is sha512"} {
		if _, err := c.Lookup(name); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("Lookup(%s) = %v, want it refused saying %q", name, err, why)
		}
	}
	if isos, _ := c.Select(Filter{Type: "iso", Arch: "amd64"}); len(isos) != 1 || isos[0].Name != "ubuntu-24.04-server" {
		t.Errorf("--type iso lists %v", isos)
	}
	if kept, err := os.ReadFile(cache); err != nil || string(kept) != seedCatalog {
		t.Errorf("kept copy: %v", err)
	}

	// The server fails: the kept copy serves, with a warning.
	status.Store(http.StatusNotFound)
	if c, err = OpenCatalog(context.Background(), src); err != nil {
		t.Fatalf("with the server failing and a kept copy: %v", err)
	}
	if _, err := c.Lookup("ubuntu-24.04-server"); err != nil || !strings.Contains(strings.Join(logged, "\n"), "kept copy") {
		t.Errorf("the kept copy was not used (%v), log %q", err, logged)
	}

	// A broken catalog is not kept over the good one.
	status.Store(0)
	body.Store(`{"meta": {"api_version": "v1"}, "images": [{"id": "x"}]}`)
	if _, err = OpenCatalog(context.Background(), src); err != nil {
		t.Fatalf("with a broken catalog served and a kept copy: %v", err)
	}
	if kept, _ := os.ReadFile(cache); string(kept) != seedCatalog {
		t.Errorf("the broken catalog replaced the kept copy")
	}

	// Offline: the kept copy only, no request.
	before := gets.Load()
	off := src
	off.Offline = true
	if c, err = OpenCatalog(context.Background(), off); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup("ubuntu-24.04-server"); err != nil || gets.Load() != before {
		t.Errorf("offline: %v, %d requests", err, gets.Load()-before)
	}
	off.JSONCache = filepath.Join(t.TempDir(), "none.json")
	var je *JSONCatalogError
	if _, err := OpenCatalog(context.Background(), off); !errors.As(err, &je) || !os.IsNotExist(errors.Unwrap(je.Err)) && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("offline without a kept copy: %v", err)
	}
}

func TestOpenCatalogLayers(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "catalog.json")
	if err := os.WriteFile(local, []byte(seedCatalog), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := writeCatalog(t, "distros:\n  ubuntu-24.04-server:\n    url: https://own.example.com/u.img\n")
	for _, u := range []string{local, "file://" + local} {
		c, err := OpenCatalog(context.Background(), CatalogSource{JSONURL: u, File: yaml})
		if err != nil {
			t.Fatal(err)
		}
		// CATALOG, the user's own file, wins over the JSON catalog.
		if d, _ := c.Lookup("ubuntu-24.04-server"); d.URL != "https://own.example.com/u.img" || d.Kind() != "cloud-image" {
			t.Errorf("%s: ubuntu-24.04-server = %+v, want CATALOG's entry", u, d)
		}
		if d, _ := c.Lookup("debian-12"); d.URL != "https://mirror.example.com/debian-12.qcow2" {
			t.Errorf("%s: debian-12 = %+v, want the JSON entry", u, d)
		}
	}
}

func TestOpenCatalogRefuses(t *testing.T) {
	bad := map[string]string{
		"plain http":       "",
		"malformed":        `{"meta": `,
		"unknown field":    `{"meta": {"api_version": "v1"}, "images": [], "extra": 1}`,
		"no api_version":   `{"meta": {}, "images": []}`,
		"missing url":      `{"meta": {"api_version": "v1"}, "images": [{"id": "a", "name": "A", "arch": "amd64"}]}`,
		"bad id":           `{"meta": {"api_version": "v1"}, "images": [{"id": "A B", "name": "A", "arch": "amd64", "url": "https://x/a"}]}`,
		"bad url":          `{"meta": {"api_version": "v1"}, "images": [{"id": "a", "name": "A", "arch": "amd64", "url": "ftp://x/a"}]}`,
		"bad sha256":       `{"meta": {"api_version": "v1"}, "images": [{"id": "a", "name": "A", "arch": "amd64", "url": "https://x/a", "checksum": {"algorithm": "sha256", "value": "xyz"}}]}`,
		"id twice":         `{"meta": {"api_version": "v1"}, "images": [{"id": "a", "name": "A", "arch": "amd64", "url": "https://x/a"}, {"id": "a", "name": "A", "arch": "amd64", "url": "https://x/b"}]}`,
		"text after":       `{"meta": {"api_version": "v1"}, "images": []} {}`,
		"unknown in image": `{"meta": {"api_version": "v1"}, "images": [{"id": "a", "name": "A", "arch": "amd64", "url": "https://x/a", "sha256": "x"}]}`,
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			src := CatalogSource{JSONURL: "http://127.0.0.1:1/catalog.json"}
			if body != "" {
				p := filepath.Join(t.TempDir(), "c.json")
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				src.JSONURL = p
			}
			var je *JSONCatalogError
			if _, err := OpenCatalog(context.Background(), src); !errors.As(err, &je) {
				t.Errorf("error %v, want a *JSONCatalogError", err)
			}
		})
	}
}

// TestOpenCatalogNoDowngrade: an https catalog redirected to plain http is
// refused, and the kept copy does not paper over it.
func TestOpenCatalogNoDowngrade(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(seedCatalog)) }))
	defer plain.Close()
	s := httptest.NewTLSServer(http.RedirectHandler(plain.URL+"/catalog.json", http.StatusFound))
	defer s.Close()
	cache := filepath.Join(t.TempDir(), "catalog.json")
	os.WriteFile(cache, []byte(seedCatalog), 0o644)
	_, err := OpenCatalog(context.Background(), CatalogSource{JSONURL: s.URL + "/c.json", JSONCache: cache, Client: s.Client()})
	if !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), "plain http") {
		t.Errorf("error %v, want the downgrade refused", err)
	}
}

func FuzzParseJSONCatalog(f *testing.F) {
	f.Add([]byte(seedCatalog))
	f.Add([]byte(`{"meta": {"api_version": "v1"}, "images": [{"id": "a", "name": "A", "arch": "amd64", "url": "https://x/a.iso"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseJSONCatalog("fuzz", data)
		if err != nil {
			return
		}
		for _, d := range c.List() {
			if d.validate() != nil || !distroName.MatchString(d.Name) {
				t.Errorf("accepted an invalid entry %+v", d)
			}
		}
	})
}
