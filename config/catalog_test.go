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

	// The plan (vm) looks DISTRO up in the catalogs; config keeps where
	// they are.
	c, err := Load(map[string]string{"DATA_DIR": dataDir, "CATALOG_URL": file, "DISTRO": "golden-1"}, testHost)
	if err != nil {
		t.Fatal(err)
	}
	want := JSONCatalog{URL: file, Cache: filepath.Join(dataDir, "cache", "catalog.json")}
	if c.JSONCatalog != want || c.Boot.Distro != "golden-1" {
		t.Errorf("JSONCatalog %+v, DISTRO %q; want %+v, golden-1", c.JSONCatalog, c.Boot.Distro, want)
	}
	c, err = Load(map[string]string{"DATA_DIR": dataDir, "CATALOG_OFFLINE": "yes", "CATALOG_CACHE": file}, testHost)
	if want := (JSONCatalog{Cache: file, Offline: true}); err != nil || c.JSONCatalog != want {
		t.Errorf("offline: %+v, %v; want %+v", c.JSONCatalog, err, want)
	}
	if c, err = Load(map[string]string{"DATA_DIR": dataDir}, testHost); err != nil || c.JSONCatalog.Used() || c.JSONCatalog.Cache != "" {
		t.Errorf("no JSON catalog: %+v, %v", c.JSONCatalog, err)
	}
}

func TestJSONCatalogRefused(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		env    map[string]string
		name   string
		advice string
	}{
		{map[string]string{"CATALOG_URL": "http://example.com/catalog.json"}, "CATALOG_URL", "plain-http catalog"},
		{map[string]string{"CATALOG_URL": "ftp://example.com/catalog.json"}, "CATALOG_URL", "https URL"},
		{map[string]string{"CATALOG_URL": filepath.Join(dir, "missing.json")}, "CATALOG_URL", "readable local JSON file"},
		{map[string]string{"CATALOG_CACHE": "/data/catalog.json"}, "CATALOG_CACHE", "only together with CATALOG_URL or CATALOG_OFFLINE=1"},
		{map[string]string{"CATALOG_OFFLINE": "1", "CATALOG_CACHE": "relative.json"}, "CATALOG_CACHE", "absolute"},
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
