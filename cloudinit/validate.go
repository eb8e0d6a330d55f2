package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"

	"go.yaml.in/yaml/v3"
)

const jinjaHeader = "## template: jinja"

// userDataHeaders are the starts of user-data that cloud-init recognises, in
// the order they are tried: #cloud-config-archive must come before
// #cloud-config, which is a prefix of it. Like cloud-init, matching ignores
// case and leading white space.
var userDataHeaders = []string{
	"#cloud-config-archive",
	cloudConfigHeader,
	jinjaHeader,
	"#cloud-boothook",
	"#part-handler",
	"#include",
	"#!",
	"content-type:",
	"mime-version:",
}

const acceptedFormats = "user-data must start with #cloud-config, #! (a script), #include, " +
	"#cloud-boothook, #part-handler, #cloud-config-archive, " +
	"## template: jinja (followed by one of these), " +
	"a MIME header (Content-Type: or MIME-Version:), or be gzip data"

var gzipMagic = []byte{0x1f, 0x8b}

// listKeys are the top-level cloud-config keys whose schema allows only a
// list. users and groups are left out: cloud-init also takes a string or a
// mapping for them.
var listKeys = map[string]bool{
	"bootcmd":             true,
	"mounts":              true,
	"packages":            true,
	"runcmd":              true,
	"ssh_authorized_keys": true,
	"write_files":         true,
}

// ValidateUserData checks a user's user-data before boot, so that a mistake
// is reported now rather than silently ignored by cloud-init in the guest.
// name is the file path used in messages.
//
// A #cloud-config file must be a single YAML mapping whose list-only keys
// are lists and whose write_files items have a path. Other formats cloud-init
// accepts pass unchecked; anything else is an error.
func ValidateUserData(name string, data []byte) error {
	if err := validateUserData(data); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func validateUserData(data []byte) error {
	if bytes.HasPrefix(data, gzipMagic) {
		return nil
	}
	start := bytes.TrimLeft(data, " \t\r\n\v\f")
	if len(start) == 0 {
		return errors.New("file is empty; " + acceptedFormats)
	}
	switch userDataHeader(start) {
	case "":
		return errors.New("unknown format; " + acceptedFormats)
	case cloudConfigHeader:
		return validateCloudConfig(data)
	case jinjaHeader:
		// cloud-init renders the rest of the file and then reads its header.
		_, rest, _ := bytes.Cut(start, []byte("\n"))
		if h := userDataHeader(bytes.TrimLeft(rest, " \t\r\n\v\f")); h == "" || h == jinjaHeader {
			return errors.New("the line after " + jinjaHeader + " must start with another header; " + acceptedFormats)
		}
	}
	return nil
}

// userDataHeader returns the entry of userDataHeaders that data starts with,
// or "".
func userDataHeader(data []byte) string {
	for _, h := range userDataHeaders {
		if len(data) >= len(h) && bytes.EqualFold(data[:len(h)], []byte(h)) {
			return h
		}
	}
	return ""
}

func validateCloudConfig(data []byte) error {
	doc, err := parseYAML(data)
	if err != nil {
		return fmt.Errorf("line %d: YAML: %s", yamlErrorLine(data, err), yamlMessage(err))
	}
	if len(doc.Content) == 0 {
		return nil // only comments: cloud-init reads it as an empty config
	}
	root := resolve(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil // "~" or "null": also an empty config to cloud-init
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: cloud-config must be a mapping, got %s", root.Line, describe(root))
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, value := root.Content[i].Value, resolve(root.Content[i+1])
		if !listKeys[key] {
			continue
		}
		if value.Kind != yaml.SequenceNode {
			return fmt.Errorf("line %d: %s must be a list, got %s", value.Line, key, describe(value))
		}
		if key == "write_files" {
			if err := checkWriteFiles(value); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkWriteFiles(list *yaml.Node) error {
	for i, item := range list.Content {
		item = resolve(item)
		if item.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d: write_files item %d must be a mapping, got %s", item.Line, i+1, describe(item))
		}
		if !hasPath(item) {
			return fmt.Errorf("line %d: write_files item %d has no path", item.Line, i+1)
		}
	}
	return nil
}

func hasPath(item *yaml.Node) bool {
	for i := 0; i+1 < len(item.Content); i += 2 {
		if item.Content[i].Value == "path" {
			v := resolve(item.Content[i+1])
			return v.Kind == yaml.ScalarNode && v.Tag != "!!null" && v.Value != ""
		}
	}
	return false
}

// resolve follows an alias to its anchored node. One step is enough: an
// anchor can only be placed on a node that is not itself an alias.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!null":
		return "an empty value"
	case "!!str":
		return "a string"
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	}
	return "a scalar"
}

var errExtraDocument = errors.New("yaml: expected a single document, found another")

// parseYAML parses data as exactly one YAML document, as cloud-init's
// yaml.safe_load does; a stream of several documents is an error there.
func parseYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, errExtraDocument
	case !errors.Is(err, io.EOF):
		return nil, err
	}
	return &doc, nil
}

var yamlErrorPrefix = regexp.MustCompile(`^yaml: (line \d+: )?`)

func yamlMessage(err error) string {
	return yamlErrorPrefix.ReplaceAllString(err.Error(), "")
}

// yamlErrorLine returns the 1-based line at which err first shows up in data:
// the shortest run of whole lines that fails with the very same error.
// yaml.v3's own number cannot be used: for parser errors it is the 0-based
// line where the enclosing block starts, and some errors (an unknown anchor)
// carry none. Matching the whole error, that number included, ties a shorter
// prefix's failure to the same spot rather than to an unrelated construct cut
// in half, which is also what lets a binary search find the line.
func yamlErrorLine(data []byte, err error) int {
	var ends []int
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	return 1 + sort.Search(len(ends), func(i int) bool {
		_, perr := parseYAML(data[:ends[i]])
		return perr != nil && perr.Error() == err.Error()
	})
}
