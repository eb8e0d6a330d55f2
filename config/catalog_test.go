package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// jsonCatalogFile is a catalog in the seed project's JSON format with one
// entry, written to dir.
func jsonCatalogFile(t *testing.T, dir string) string {
	p := filepath.Join(dir, "catalog.json")
	body := `{"meta": {"api_version": "v1"}, "images": [{"id": "golden-1", "name": "Golden image", "category": "linux",
	  "version": "1", "arch": "amd64", "status": "supported", "url": "https://images.example.com/golden-1.qcow2",
	  "checksum": {"algorithm": "sha256", "value": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}]}`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestJSONCatalog(t *testing.T) {
	dir := t.TempDir()
	file := jsonCatalogFile(t, dir)
	dataDir := filepath.Join(dir, "data")

	c, err := Load(map[string]string{"DATA_DIR": dataDir, "CATALOG_URL": file, "DISTRO": "golden-1"}, testHost)
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Boot.Download; d == nil || d.URL != "https://images.example.com/golden-1.qcow2" || d.SHA256 == "" || c.Boot.Distro != "golden-1" {
		t.Errorf("DISTRO=golden-1 from the JSON catalog: %+v", c.Boot)
	}
	if want := filepath.Join(dataDir, "cache", "catalog.json"); c.JSONCatalog.Cache != want {
		t.Errorf("CATALOG_CACHE defaults to %s, want %s", c.JSONCatalog.Cache, want)
	}

	// Offline: the kept copy at CATALOG_CACHE is the catalog.
	c, err = Load(map[string]string{"DATA_DIR": dataDir, "CATALOG_OFFLINE": "1", "CATALOG_CACHE": file, "DISTRO": "golden-1"}, testHost)
	if err != nil || c.Boot.Distro != "golden-1" {
		t.Errorf("offline with a kept copy: %v", err)
	}

	// Without a JSON catalog the name is unknown.
	if _, err := Load(map[string]string{"DATA_DIR": dataDir, "DISTRO": "golden-1"}, testHost); !isConfigError(err, "DISTRO") {
		t.Errorf("golden-1 without the JSON catalog: %v", err)
	}
}

func TestJSONCatalogRefused(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.json")
	os.WriteFile(broken, []byte(`{"meta": {}}`), 0o644)
	tests := []struct {
		env    map[string]string
		name   string
		advice string
	}{
		{map[string]string{"CATALOG_URL": "http://example.com/catalog.json"}, "CATALOG_URL", "plain-http catalog"},
		{map[string]string{"CATALOG_URL": "ftp://example.com/catalog.json"}, "CATALOG_URL", "https URL"},
		{map[string]string{"CATALOG_URL": filepath.Join(dir, "missing.json")}, "CATALOG_URL", "readable local JSON file"},
		{map[string]string{"CATALOG_URL": broken}, "CATALOG_URL", "seed project's format"},
		{map[string]string{"CATALOG_CACHE": "/data/catalog.json"}, "CATALOG_CACHE", "only together with CATALOG_URL or CATALOG_OFFLINE=1"},
		{map[string]string{"CATALOG_OFFLINE": "1", "CATALOG_CACHE": "relative.json"}, "CATALOG_CACHE", "absolute"},
		{map[string]string{"CATALOG_OFFLINE": "1", "CATALOG_CACHE": filepath.Join(dir, "none.json")}, "CATALOG_OFFLINE", "kept at CATALOG_CACHE"},
		{map[string]string{"CATALOG_OFFLINE": "maybe"}, "CATALOG_OFFLINE", "true/false"},
	}
	for _, tc := range tests {
		tc.env["DATA_DIR"] = filepath.Join(dir, "data")
		_, err := Load(tc.env, testHost)
		if !isConfigError(err, tc.name) || !strings.Contains(err.Error(), tc.advice) {
			t.Errorf("Load(%v) = %v, want a %s error saying %q", tc.env, err, tc.name, tc.advice)
		}
	}
}
