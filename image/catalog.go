package image

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed catalog.yaml
var embeddedCatalog []byte

// Firmware is what an image boots with.
type Firmware string

const (
	FirmwareUEFI Firmware = "uefi"
	FirmwareBIOS Firmware = "bios"
)

// Arch is a guest architecture, by QEMU's name.
type Arch string

const (
	ArchX86_64  Arch = "x86_64"
	ArchAArch64 Arch = "aarch64"
)

// ParseArch reads an architecture by QEMU's name or Debian's (amd64,
// arm64), in any case; ok is false for anything else.
func ParseArch(v string) (a Arch, ok bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "x86_64", "amd64":
		return ArchX86_64, true
	case "aarch64", "arm64":
		return ArchAArch64, true
	}
	return "", false
}

// Distro is one catalog entry.
type Distro struct {
	Name        string     `yaml:"-"`
	Description string     `yaml:"description"`
	Aliases     []string   `yaml:"aliases"` // more names, e.g. the seed project's
	URL         string     `yaml:"url"`
	SHA256      string     `yaml:"sha256"`       // pinned digest, or
	ChecksumURL string     `yaml:"checksum_url"` // the project's checksum file
	User        string     `yaml:"user"`         // the image's default login user (a hint)
	Firmware    []Firmware `yaml:"firmware"`
	Arch        Arch       `yaml:"arch"` // x86_64 when not given
	Type        string     `yaml:"-"`    // "" (a cloud image), iso or disk-image: JSON catalog entries
}

// Kind is the entry's --type: cloud-image, iso or disk-image.
func (d Distro) Kind() string {
	if d.Type == "" {
		return "cloud-image"
	}
	return d.Type
}

// Boots reports whether the image starts with that firmware.
func (d Distro) Boots(f Firmware) bool { return slices.Contains(d.Firmware, f) }

// FetchRequest is the download of this entry's image into cacheDir; the
// caller adds Progress and Log.
func (d Distro) FetchRequest(cacheDir string) FetchRequest {
	return FetchRequest{URL: d.URL, SHA256: d.SHA256, ChecksumURL: d.ChecksumURL, CacheDir: cacheDir}
}

// Catalog is the set of distributions known by name.
type Catalog struct {
	distros  map[string]Distro
	unusable map[string]string // JSON catalog entries this build cannot boot, and why
}

// LoadCatalog returns the embedded catalog with the entries of the file at
// override (if not "") laid over it: an entry there replaces the embedded
// one of the same name whole, since a new URL with an old checksum would
// never verify.
func LoadCatalog(override string) (*Catalog, error) {
	return OpenCatalog(context.Background(), CatalogSource{File: override})
}

// Lookup returns the entry called name; an unknown name's error suggests
// the closest known ones.
func (c *Catalog) Lookup(name string) (Distro, error) {
	if d, ok := c.distros[name]; ok {
		return d, nil
	}
	if why, ok := c.unusable[name]; ok {
		return Distro{}, fmt.Errorf("catalog entry %q cannot boot here: %s", name, why)
	}
	names := make([]string, 0, len(c.distros))
	for _, n := range slices.Sorted(maps.Keys(c.distros)) {
		if slices.Contains(c.distros[n].Aliases, name) {
			return c.distros[n], nil
		}
		names = append(names, n)
	}
	return Distro{}, &UnknownDistroError{Name: name, Suggestions: suggest(name, names, 3)}
}

// List returns every entry, sorted by name, for --list-distros.
func (c *Catalog) List() []Distro {
	out := make([]Distro, 0, len(c.distros))
	for _, d := range c.distros {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Distro) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// UnknownDistroError is a name the catalog does not have.
type UnknownDistroError struct {
	Name        string
	Suggestions []string
}

func (e *UnknownDistroError) Error() string {
	msg := fmt.Sprintf("unknown distribution %q", e.Name)
	if len(e.Suggestions) > 0 {
		msg += "; did you mean " + strings.Join(e.Suggestions, ", ") + "?"
	}
	return msg
}

var distroName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// parseCatalog decodes a catalog strictly: an unknown key anywhere is an
// error naming the file, the entry and the line, so a typo such as
// `checksum-url` cannot silently drop verification.
func parseCatalog(file string, data []byte) (*Catalog, error) {
	fail := func(line int, format string, args ...any) error {
		return fmt.Errorf("catalog %s: line %d: %s", file, line, fmt.Sprintf(format, args...))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("catalog %s: %w", file, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("catalog %s: empty file", file)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "expected a mapping with the key 'distros'")
	}
	var list *yaml.Node
	for i := 0; i < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Value != "distros" {
			return nil, fail(k.Line, "unknown key %q (known: distros)", k.Value)
		}
		list = root.Content[i+1]
	}
	if list == nil || list.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "'distros' must map names to entries")
	}
	c := &Catalog{distros: map[string]Distro{}}
	for i := 0; i < len(list.Content); i += 2 {
		k, v := list.Content[i], list.Content[i+1]
		d, err := decodeDistro(k.Value, v)
		if err != nil {
			return nil, fail(k.Line, "distro %q: %v", k.Value, err)
		}
		for _, a := range d.Aliases {
			if !distroName.MatchString(a) {
				return nil, fail(k.Line, "distro %q: alias %q: names use lower-case letters, digits, '.', '_' and '-'", k.Value, a)
			}
		}
		if _, dup := c.distros[d.Name]; dup {
			return nil, fail(k.Line, "distro %q is defined twice", d.Name)
		}
		c.distros[d.Name] = d
	}
	return c, nil
}

var distroKeys = []string{"description", "aliases", "url", "sha256", "checksum_url", "user", "firmware", "arch"}

func decodeDistro(name string, v *yaml.Node) (Distro, error) {
	if !distroName.MatchString(name) {
		return Distro{}, errors.New("names use lower-case letters, digits, '.', '_' and '-'")
	}
	if v.Kind != yaml.MappingNode {
		return Distro{}, errors.New("expected a mapping of " + strings.Join(distroKeys, ", "))
	}
	for i := 0; i < len(v.Content); i += 2 {
		if k := v.Content[i].Value; !slices.Contains(distroKeys, k) {
			return Distro{}, fmt.Errorf("unknown field %q (line %d; known: %s)", k, v.Content[i].Line, strings.Join(distroKeys, ", "))
		}
	}
	var d Distro
	if err := v.Decode(&d); err != nil {
		return Distro{}, err
	}
	d.Name = name
	if d.Arch == "" {
		d.Arch = ArchX86_64
	}
	if len(d.Firmware) == 0 {
		d.Firmware = []Firmware{FirmwareUEFI, FirmwareBIOS}
		if d.Arch == ArchAArch64 { // arm64 has no BIOS
			d.Firmware = []Firmware{FirmwareUEFI}
		}
	}
	return d, d.validate()
}

func (d Distro) validate() error {
	if d.URL == "" {
		return errors.New("url is missing")
	}
	if err := checkURL(d.URL); err != nil {
		return fmt.Errorf("url: %w", err)
	}
	switch {
	case d.SHA256 != "" && d.ChecksumURL != "":
		return errors.New("give sha256 or checksum_url, not both")
	case d.SHA256 != "":
		if _, err := ParseSHA256(d.SHA256); err != nil {
			return fmt.Errorf("sha256: %w", err)
		}
	case d.ChecksumURL != "":
		if err := checkURL(d.ChecksumURL); err != nil {
			return fmt.Errorf("checksum_url: %w", err)
		}
	}
	for _, f := range d.Firmware {
		if f != FirmwareUEFI && f != FirmwareBIOS {
			return fmt.Errorf("firmware %q: accepted are uefi and bios", f)
		}
	}
	switch d.Arch {
	case ArchX86_64:
	case ArchAArch64:
		if d.Boots(FirmwareBIOS) {
			return errors.New("firmware bios: an aarch64 image boots with uefi only")
		}
	default:
		return fmt.Errorf("arch %q: accepted are x86_64 and aarch64", d.Arch)
	}
	return nil
}

// checkURL accepts absolute http and https URLs with a host.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: only http and https URLs are accepted", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", raw)
	}
	return nil
}

// Filter is --list-distros' --arch, --type and --search, as in the seed
// project; empty fields match everything.
type Filter struct {
	Arch   string // x86_64 (amd64) or aarch64 (arm64)
	Type   string // cloud-image, iso or disk-image
	Search string // a word in the name, an alias or the description
}

// Filter errors name the flag and what it accepts.
var (
	ErrFilterArch = errors.New("--arch: accepted are x86_64 (amd64) and aarch64 (arm64)")
	ErrFilterType = errors.New("--type: accepted are cloud-image, iso and disk-image")
)

// Select returns the entries f matches, sorted by name. Built-in entries
// are cloud images; a JSON catalog's are iso or disk-image.
func (c *Catalog) Select(f Filter) ([]Distro, error) {
	arch, ok := ParseArch(f.Arch)
	if !ok && f.Arch != "" {
		return nil, ErrFilterArch
	}
	kind := strings.ToLower(f.Type)
	switch kind {
	case "", "iso", "disk-image":
	case "cloud-image", "cloud":
		kind = "cloud-image"
	default:
		return nil, ErrFilterType
	}
	var out []Distro
	word := strings.ToLower(f.Search)
	for _, d := range c.List() {
		if arch != "" && d.Arch != arch || kind != "" && d.Kind() != kind {
			continue
		}
		text := strings.ToLower(d.Name + " " + strings.Join(d.Aliases, " ") + " " + d.Description)
		if strings.Contains(text, word) {
			out = append(out, d)
		}
	}
	return out, nil
}
