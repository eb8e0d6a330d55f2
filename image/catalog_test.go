package image

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestEmbeddedCatalog(t *testing.T) {
	c, err := LoadCatalog("")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ubuntu-2404", "ubuntu-2204", "debian-12", "debian-13", "fedora", "centos-stream-9",
		"centos-stream-10", "rocky-9", "almalinux-9", "opensuse-leap", "alpine", "arch",
		"ubuntu-2404-arm64", "ubuntu-2204-arm64", "debian-12-arm64", "debian-13-arm64"}
	for _, name := range want {
		d, err := c.Lookup(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if d.Name != name || d.Description == "" || d.User == "" || len(d.Firmware) == 0 {
			t.Errorf("%s: incomplete entry %+v", name, d)
		}
		if !strings.HasPrefix(d.URL, "https://") || !strings.HasPrefix(d.ChecksumURL+d.SHA256, "https://") && d.SHA256 == "" {
			t.Errorf("%s: needs an https URL and a checksum source: %+v", name, d)
		}
		if r := d.FetchRequest("/cache"); r.URL != d.URL || r.ChecksumURL != d.ChecksumURL || r.CacheDir != "/cache" {
			t.Errorf("%s: FetchRequest %+v", name, r)
		}
	}
	list := c.List()
	if len(list) < len(want) || !slices.IsSortedFunc(list, func(a, b Distro) int { return strings.Compare(a.Name, b.Name) }) {
		t.Errorf("List() is short or unsorted: %v", list)
	}
	alpine, _ := c.Lookup("alpine")
	if !alpine.Boots(FirmwareUEFI) || alpine.Boots(FirmwareBIOS) {
		t.Errorf("alpine firmware %v: the catalog picks the UEFI image", alpine.Firmware)
	}
}

func TestLookupSuggests(t *testing.T) {
	c, err := LoadCatalog("")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		typed string
		want  []string
	}{
		{"ubunt-2404", []string{"ubuntu-2404"}},
		{"ubuntu", []string{"ubuntu-2204", "ubuntu-2404"}},
		{"debian12", []string{"debian-12"}},
		{"centos", []string{"centos-stream-9", "centos-stream-10"}},
		{"fedora-44", []string{"fedora"}},
		{"Alpine", []string{"alpine"}},
		{"windows-11", nil},
	}
	for _, tt := range tests {
		_, err := c.Lookup(tt.typed)
		var u *UnknownDistroError
		if !errors.As(err, &u) {
			t.Fatalf("Lookup(%q) = %v, want an UnknownDistroError", tt.typed, err)
		}
		for _, w := range tt.want {
			if !slices.Contains(u.Suggestions, w) {
				t.Errorf("Lookup(%q) suggests %v, want %s among them", tt.typed, u.Suggestions, w)
			}
		}
		if len(tt.want) > 0 && u.Suggestions[0] != tt.want[0] {
			t.Errorf("Lookup(%q) suggests %v first, want %s", tt.typed, u.Suggestions, tt.want[0])
		}
		if tt.want == nil && len(u.Suggestions) != 0 {
			t.Errorf("Lookup(%q) suggests %v, want nothing", tt.typed, u.Suggestions)
		}
		if !strings.Contains(err.Error(), tt.typed) {
			t.Errorf("error %q does not name %q", err, tt.typed)
		}
	}
}

func writeCatalog(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "my-catalog.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadCatalogOverride(t *testing.T) {
	p := writeCatalog(t, `
distros:
  ubuntu-2404:
    url: https://mirror.example.test/noble.img
    sha256: `+strings.Repeat("a", 64)+`
  internal-rhel:
    description: our golden image
    url: http://images.example.test/rhel.qcow2
    checksum_url: http://images.example.test/SHA256SUMS
    firmware: [bios]
  my-arm:
    url: https://images.example.test/arm.qcow2
    sha256: `+strings.Repeat("c", 64)+`
    arch: aarch64
`)
	c, err := LoadCatalog(p)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := c.Lookup("ubuntu-2404")
	if u.URL != "https://mirror.example.test/noble.img" || u.ChecksumURL != "" || u.User != "" {
		t.Errorf("override must replace the entry whole, got %+v", u)
	}
	if !u.Boots(FirmwareUEFI) || !u.Boots(FirmwareBIOS) {
		t.Errorf("no firmware given: both assumed, got %v", u.Firmware)
	}
	r, err := c.Lookup("internal-rhel")
	if err != nil || r.Boots(FirmwareUEFI) || !r.Boots(FirmwareBIOS) {
		t.Errorf("internal-rhel: %+v, %v", r, err)
	}
	if _, err := c.Lookup("debian-12"); err != nil {
		t.Errorf("embedded entries stay: %v", err)
	}
	if u.Arch != ArchX86_64 {
		t.Errorf("no arch given: x86_64 assumed, got %q", u.Arch)
	}
	a, err := c.Lookup("my-arm")
	if err != nil || a.Arch != ArchAArch64 || !a.Boots(FirmwareUEFI) || a.Boots(FirmwareBIOS) {
		t.Errorf("my-arm: aarch64 with uefi only expected, got %+v, %v", a, err)
	}
}

func TestLoadCatalogRejects(t *testing.T) {
	sha := strings.Repeat("b", 64)
	tests := []struct {
		name, body string
		want       []string // in the error, besides the file name
	}{
		{"unknown field", "distros:\n  mine:\n    url: https://x.test/a.img\n    checksum-url: https://x.test/SUMS\n",
			[]string{`"mine"`, `"checksum-url"`, "line 4"}},
		{"missing url", "distros:\n  mine:\n    sha256: " + sha + "\n", []string{`"mine"`, "url is missing"}},
		{"file URL", "distros:\n  mine:\n    url: file:///a.img\n", []string{`"mine"`, "http"}},
		{"bad sha256", "distros:\n  mine:\n    url: https://x.test/a.img\n    sha256: abc\n", []string{`"mine"`, "sha256"}},
		{"both checksums", "distros:\n  mine:\n    url: https://x.test/a.img\n    sha256: " + sha + "\n    checksum_url: https://x.test/S\n",
			[]string{"not both"}},
		{"bad firmware", "distros:\n  mine:\n    url: https://x.test/a.img\n    firmware: [coreboot]\n", []string{`"coreboot"`}},
		{"bad arch", "distros:\n  mine:\n    url: https://x.test/a.img\n    arch: mips\n", []string{`"mips"`, "x86_64 and aarch64"}},
		{"arm64 with bios", "distros:\n  mine:\n    url: https://x.test/a.img\n    arch: aarch64\n    firmware: [uefi, bios]\n", []string{"uefi only"}},
		{"wrong type", "distros:\n  mine:\n    url: https://x.test/a.img\n    firmware: {a: b}\n", []string{`"mine"`}},
		{"unknown top key", "distro:\n  mine: {}\n", []string{`"distro"`}},
		{"defined twice", "distros:\n  mine:\n    url: https://x.test/a.img\n  mine:\n    url: https://x.test/b.img\n", []string{"twice"}},
		{"bad name", "distros:\n  My Distro:\n    url: https://x.test/a.img\n", []string{"My Distro"}},
		{"entry not a mapping", "distros:\n  mine: https://x.test/a.img\n", []string{`"mine"`}},
		{"not YAML", "distros: [\n", nil},
		{"empty", "", []string{"empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeCatalog(t, tt.body)
			_, err := LoadCatalog(p)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append(tt.want, p) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := LoadCatalog(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing catalog file was accepted")
	}
}

func TestCatalogAliases(t *testing.T) {
	c, err := LoadCatalog("")
	if err != nil {
		t.Fatal(err)
	}
	for alias, name := range map[string]string{"ubuntu-24.04-cloud-amd64": "ubuntu-2404", "debian-12-cloud-amd64": "debian-12", "fedora-44-cloud-amd64": "fedora"} {
		d, err := c.Lookup(alias)
		if err != nil || d.Name != name {
			t.Errorf("Lookup(%q) = %q, %v; want %s", alias, d.Name, err, name)
		}
	}
	if _, err := parseCatalog("t", []byte("distros:\n  x:\n    aliases: [Bad Name]\n    url: https://e.com/x.img\n")); err == nil {
		t.Error("an alias that is no distro name was accepted")
	}
}

func TestCatalogSelect(t *testing.T) {
	c, err := LoadCatalog("")
	if err != nil {
		t.Fatal(err)
	}
	all := len(c.List())
	const arm64 = 4
	tests := []struct {
		f    Filter
		want int // -1: every entry
	}{
		{Filter{}, -1}, {Filter{Arch: "amd64"}, all - arm64}, {Filter{Arch: "x86_64", Type: "cloud-image"}, all - arm64},
		{Filter{Arch: "arm64"}, arm64}, {Filter{Arch: "AArch64", Search: "debian"}, 2},
		{Filter{Type: "iso"}, 0}, {Filter{Type: "disk-image"}, 0},
		{Filter{Search: "UBUNTU"}, 4}, {Filter{Search: "24.04"}, 2}, {Filter{Search: "no-such-thing"}, 0},
	}
	for _, tc := range tests {
		got, err := c.Select(tc.f)
		want := tc.want
		if want < 0 {
			want = all
		}
		if err != nil || len(got) != want {
			t.Errorf("Select(%+v) = %d entries, %v; want %d", tc.f, len(got), err, want)
		}
		for _, d := range got {
			if a, _ := ParseArch(tc.f.Arch); a != "" && d.Arch != a {
				t.Errorf("Select(%+v) gave %s of %s", tc.f, d.Name, d.Arch)
			}
		}
	}
	if _, err := c.Select(Filter{Arch: "mips"}); err != ErrFilterArch {
		t.Errorf("--arch mips: %v", err)
	}
	if _, err := c.Select(Filter{Type: "vm"}); err != ErrFilterType {
		t.Errorf("--type vm: %v", err)
	}
}
