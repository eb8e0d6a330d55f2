package vm

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmrunner/vmrunner/config"
)

// zipOf writes a zip of the named files (base names) to p.
func zipOf(t *testing.T, p string, files ...string) {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := w.Create(filepath.Base(f))
		m.Write(data)
	}
	w.Close()
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPreparePackedBootFrom: a local archive is a base the start unpacks
// into the cache, inspects and, for a vmdk, converts; --dry-run, which
// writes nothing, says so. An archive with two disks is refused naming
// BOOT_FROM (exit 2) and leaves nothing in the cache but lock files.
func TestPreparePackedBootFrom(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	vmdk := filepath.Join(dir, "appliance.vmdk")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "vmdk", vmdk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	good, bad := filepath.Join(dir, "appliance.zip"), filepath.Join(dir, "two.zip")
	zipOf(t, good, vmdk)
	other := filepath.Join(dir, "other.img")
	os.WriteFile(other, make([]byte, 1<<20), 0o644)
	zipOf(t, bad, vmdk, other)
	data := filepath.Join(dir, "data")

	env := prepareEnv(data)
	env["BOOT_FROM"] = good
	p := preparePlan(t, env, true)
	if p.Base == nil || p.Base.UnpackFrom != good || p.Base.Packing != "zip" {
		t.Fatalf("plan's base %+v", p.Base)
	}
	if _, warnings, err := p.DryRunSpec(); err != nil || !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "is packed (zip)") }) {
		t.Errorf("--dry-run: %q, %v", warnings, err)
	}
	prep := mustPrepare(t, p)
	defer prep.Release()
	cache := filepath.Join(data, "cache") + "/"
	if !strings.HasPrefix(prep.BasePath, cache+"converted-") || prep.Base.Format != "qcow2" {
		t.Errorf("base %s (%+v), want a qcow2 copy in %s", prep.BasePath, prep.Base, cache)
	}

	env = prepareEnv(data)
	env["BOOT_FROM"], env["GUEST_NAME"] = bad, "two"
	_, err := Prepare(context.Background(), preparePlan(t, env, true), Tools{Run: runCmd})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "BOOT_FROM" || !strings.Contains(err.Error(), "several disk images") {
		t.Fatalf("two disks: %v, want a BOOT_FROM configuration error", err)
	}
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if strings.Contains(e.Name(), "two") && !strings.HasSuffix(e.Name(), ".lock") {
			t.Errorf("left in the cache: %s", e.Name())
		}
	}
}

// TestPlanJSONCatalog: DISTRO names an entry of the JSON catalog
// (CATALOG_URL) that ReadCatalog reads for the host facts.
func TestPlanJSONCatalog(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "catalog.json")
	os.WriteFile(file, []byte(`{"meta": {"api_version": "v1"}, "images": [
	  {"id": "golden-1", "name": "Golden", "arch": "amd64", "url": "https://images.example.com/golden-1.qcow2",
	   "checksum": {"algorithm": "sha256", "value": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}},
	  {"id": "riscv-1", "name": "RISC-V", "arch": "riscv64", "url": "https://images.example.com/riscv-1.qcow2"}]}`), 0o644)
	empty := filepath.Join(dir, "empty.json")
	os.WriteFile(empty, nil, 0o644)
	facts := func(env map[string]string) (*config.Config, Facts) {
		c := loadConfig(t, env)
		f := testFacts()
		f.Catalog, f.CatalogErr = ReadCatalog(context.Background(), c, nil)
		return c, f
	}
	c, f := facts(map[string]string{"DATA_DIR": dir, "CATALOG_URL": file, "DISTRO": "golden-1"})
	p, err := MakePlan(c, f)
	if err != nil || p.Download == nil || p.Download.URL != "https://images.example.com/golden-1.qcow2" || p.Download.SHA256 == "" {
		t.Fatalf("MakePlan: %+v, %v", p, err)
	}
	for _, tc := range []struct {
		env           map[string]string
		varName, says string
	}{
		{map[string]string{"DATA_DIR": dir, "CATALOG_URL": file, "DISTRO": "riscv-1"}, "DISTRO", "it is for riscv64"},
		{map[string]string{"DATA_DIR": dir, "CATALOG_URL": empty, "DISTRO": "golden-1"}, "CATALOG_URL", "seed project's format"},
		{map[string]string{"DATA_DIR": dir, "CATALOG_OFFLINE": "1", "DISTRO": "golden-1"}, "CATALOG_OFFLINE", "kept at CATALOG_CACHE"},
	} {
		c, f := facts(tc.env)
		_, err := MakePlan(c, f)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Var != tc.varName || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v: %v, want a %s error saying %q", tc.env, err, tc.varName, tc.says)
		}
	}
}
