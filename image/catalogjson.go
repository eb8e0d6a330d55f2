package image

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// CatalogSource says where DISTRO names come from besides the built-in
// catalog: a JSON catalog in the seed project's format (CATALOG_URL,
// kept at CATALOG_CACHE, read from there alone with CATALOG_OFFLINE), and
// a YAML file of one's own (CATALOG), laid over it in that order.
type CatalogSource struct {
	File      string // CATALOG: a YAML catalog file
	JSONURL   string // CATALOG_URL: https, or a local file (a path or file://)
	JSONCache string // CATALOG_CACHE: where the fetched JSON catalog is kept
	Offline   bool   // CATALOG_OFFLINE: read the kept copy, fetch nothing

	Client *http.Client // nil: the download client (proxy from the environment)
	Log    func(msg string, keysAndValues ...any)
}

// JSONCatalogError is a JSON catalog that could not be had or read: the
// configuration (CATALOG_URL, CATALOG_CACHE) has to change.
type JSONCatalogError struct {
	Source string // the URL, or the cache file when offline
	Err    error
}

func (e *JSONCatalogError) Error() string { return fmt.Sprintf("JSON catalog %s: %v", e.Source, e.Err) }
func (e *JSONCatalogError) Unwrap() error { return e.Err }

// OpenCatalog is LoadCatalog with the JSON catalog of src laid over the
// built-in entries before src.File's. Online, the catalog is fetched (same
// redirect rules and retries as an image, at most 16 MiB), checked, and
// kept at JSONCache; when the fetch fails the kept copy is used, with a
// warning. Offline, only the kept copy is read.
func OpenCatalog(ctx context.Context, src CatalogSource) (*Catalog, error) {
	c, err := parseCatalog("embedded catalog", embeddedCatalog)
	if err != nil {
		return nil, err
	}
	if src.JSONURL != "" || src.Offline {
		data, from, err := jsonCatalogBytes(ctx, src)
		if err != nil {
			return nil, err
		}
		j, err := parseJSONCatalog(from, data)
		if err != nil {
			return nil, &JSONCatalogError{Source: from, Err: err}
		}
		c.merge(j)
	}
	if src.File != "" {
		data, err := os.ReadFile(src.File)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		user, err := parseCatalog(src.File, data)
		if err != nil {
			return nil, err
		}
		c.merge(user)
	}
	return c, nil
}

// merge lays o's entries over c's: a name o has replaces c's entry whole.
func (c *Catalog) merge(o *Catalog) {
	for name, d := range o.distros {
		c.distros[name] = d
		delete(c.unusable, name)
	}
	for name, why := range o.unusable {
		delete(c.distros, name)
		if c.unusable == nil {
			c.unusable = map[string]string{}
		}
		c.unusable[name] = why
	}
}

// maxJSONCatalog bounds a catalog read into memory.
const maxJSONCatalog = 16 << 20

// jsonCatalogBytes returns the JSON catalog's text and where it came from.
func jsonCatalogBytes(ctx context.Context, src CatalogSource) ([]byte, string, error) {
	log := src.Log
	if log == nil {
		log = func(string, ...any) {}
	}
	readFile := func(p string) ([]byte, string, error) {
		f, err := os.Open(p)
		if err != nil {
			return nil, p, &JSONCatalogError{Source: p, Err: err}
		}
		defer f.Close()
		b, err := io.ReadAll(ctxReader{ctx, io.LimitReader(f, maxJSONCatalog+1)})
		if err == nil && len(b) > maxJSONCatalog {
			err = fmt.Errorf("over %d bytes", maxJSONCatalog)
		}
		if err != nil {
			return nil, p, &JSONCatalogError{Source: p, Err: err}
		}
		return b, p, nil
	}
	switch u := src.JSONURL; {
	case src.Offline:
		if src.JSONCache == "" {
			return nil, "", &JSONCatalogError{Source: "CATALOG_CACHE", Err: errors.New("offline, and no kept copy is named")}
		}
		return readFile(src.JSONCache)
	case strings.HasPrefix(u, "file://"):
		return readFile(strings.TrimPrefix(u, "file://"))
	case !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://"):
		return readFile(u)
	}
	data, err := fetchJSONCatalog(ctx, src)
	if err == nil {
		_, err = parseJSONCatalog(src.JSONURL, data)
	}
	if err == nil {
		if src.JSONCache != "" {
			if werr := keepCatalog(src.JSONCache, data); werr != nil {
				log("could not keep the JSON catalog", "path", src.JSONCache, "error", werr.Error())
			}
		}
		return data, src.JSONURL, nil
	}
	// A kept copy stands in for a server that is down or answers
	// something else, never for a URL or redirect the rules refuse.
	if se := (*StatusError)(nil); (errors.Is(err, ErrBadURL) && !errors.As(err, &se)) || src.JSONCache == "" {
		return nil, src.JSONURL, &JSONCatalogError{Source: src.JSONURL, Err: err}
	}
	kept, from, kerr := readFile(src.JSONCache)
	if kerr != nil {
		return nil, src.JSONURL, &JSONCatalogError{Source: src.JSONURL, Err: fmt.Errorf("%w; no kept copy either (%v)", err, kerr)}
	}
	log("JSON catalog not fetched: using the kept copy", "url", src.JSONURL, "path", from, "error", err.Error())
	return kept, from, nil
}

// fetchJSONCatalog GETs the catalog as an image's checksum file is
// fetched: https only (it lists the checksums images are verified
// against, so plain http could swap both), redirects never down to http,
// retries with backoff.
func fetchJSONCatalog(ctx context.Context, src CatalogSource) ([]byte, error) {
	if !strings.HasPrefix(src.JSONURL, "https://") {
		return nil, fmt.Errorf("%w: %s: a catalog is fetched over https only (it names the images' checksums)", ErrBadURL, src.JSONURL)
	}
	if err := checkURL(src.JSONURL); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	// A start waits for the catalog: at most a minute, retries included.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	f, err := newFetcher(FetchRequest{URL: src.JSONURL, CacheDir: "-", Client: src.Client, Log: src.Log, Attempts: 3})
	if err != nil {
		return nil, err
	}
	body, err := f.get(ctx, src.JSONURL, maxJSONCatalog+1)
	if err == nil && len(body) > maxJSONCatalog {
		err = fmt.Errorf("%w: %s is over %d bytes", ErrBadURL, src.JSONURL, maxJSONCatalog)
	}
	return body, err
}

// keepCatalog writes the fetched catalog whole or not at all.
func keepCatalog(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(p, data)
}

// jsonCatalog is the seed project's (docker-vm-runner's) catalog format:
// meta with an api_version, and images with an id, a name, an arch, a
// url and a checksum. Unknown fields are refused, as in a YAML catalog.
type jsonCatalog struct {
	Meta struct {
		APIVersion  string `json:"api_version"`
		GeneratedAt string `json:"generated_at"`
		Count       int    `json:"count"`
	} `json:"meta"`
	Images []jsonImage `json:"images"`
}

type jsonImage struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Category    string `json:"category"`
	Distro      string `json:"distro"`
	Codename    string `json:"codename"`
	Version     string `json:"version"`
	Edition     string `json:"edition"`
	Arch        string `json:"arch"`
	ReleaseType string `json:"release_type"`
	URL         string `json:"url"`
	Homepage    string `json:"homepage"`
	Checksum    struct {
		Algorithm string `json:"algorithm"`
		Value     string `json:"value"`
	} `json:"checksum"`
	EOL struct {
		Standard  string `json:"standard"`
		Extended  string `json:"extended"`
		IsRolling bool   `json:"is_rolling"`
		Note      string `json:"note"`
	} `json:"eol"`
	Status string `json:"status"`
}

// parseJSONCatalog reads a JSON catalog strictly: a malformed file, an
// unknown field, an entry without id, name, arch or url, a bad URL or
// checksum, or an id given twice is an error naming the entry. An entry
// vmrunner cannot boot (an architecture other than x86_64 and aarch64, a
// digest other than sha256) is kept aside, so that asking for it says why.
func parseJSONCatalog(from string, data []byte) (*Catalog, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var j jsonCatalog
	if err := dec.Decode(&j); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("text after the catalog object")
	}
	if strings.TrimSpace(j.Meta.APIVersion) == "" {
		return nil, errors.New("meta.api_version is missing")
	}
	c := &Catalog{distros: map[string]Distro{}, unusable: map[string]string{}}
	for i, im := range j.Images {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("images[%d] (%q): %s", i, im.ID, fmt.Sprintf(format, args...))
		}
		for field, v := range map[string]string{"id": im.ID, "name": im.Name, "arch": im.Arch, "url": im.URL} {
			if strings.TrimSpace(v) == "" {
				return nil, fail("%s is missing", field)
			}
		}
		if !distroName.MatchString(im.ID) {
			return nil, fail("ids use lower-case letters, digits, '.', '_' and '-'")
		}
		if _, dup := c.distros[im.ID]; dup || c.unusable[im.ID] != "" {
			return nil, fail("the id is given twice")
		}
		d := Distro{Name: im.ID, Description: im.Name, URL: im.URL, Firmware: []Firmware{FirmwareUEFI, FirmwareBIOS}, Type: "disk-image"}
		if im.Edition != "" && !strings.Contains(im.Name, im.Edition) {
			d.Description += " " + im.Edition
		}
		if strings.EqualFold(path.Ext(strings.SplitN(im.URL, "?", 2)[0]), ".iso") {
			d.Type = "iso"
		}
		if err := checkURL(im.URL); err != nil {
			return nil, fail("url: %v", err)
		}
		switch a := strings.ToLower(im.Checksum.Algorithm); {
		case im.Checksum.Value == "" && a == "":
		case a == "sha256":
			if _, err := ParseSHA256(im.Checksum.Value); err != nil {
				return nil, fail("checksum: %v", err)
			}
			d.SHA256 = strings.ToLower(im.Checksum.Value)
		default:
			if _, err := hex.DecodeString(im.Checksum.Value); err != nil || im.Checksum.Value == "" {
				return nil, fail("checksum: %q is not a hex digest", im.Checksum.Value)
			}
			c.unusable[im.ID] = fmt.Sprintf("its checksum is %s; vmrunner pins sha256 digests (add the entry with a sha256 through CATALOG)", im.Checksum.Algorithm)
			continue
		}
		arch, ok := ParseArch(im.Arch)
		if !ok {
			c.unusable[im.ID] = fmt.Sprintf("it is for %s; vmrunner boots x86_64 and aarch64 guests", im.Arch)
			continue
		}
		if d.Arch = arch; arch == ArchAArch64 {
			d.Firmware = []Firmware{FirmwareUEFI} // arm64 has no BIOS
		}
		c.distros[im.ID] = d
	}
	return c, nil
}
