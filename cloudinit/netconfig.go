package cloudinit

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// ValidateNetworkConfig checks a NoCloud network-config file before boot:
// one YAML mapping, optionally wrapped in a top-level network: key (cloud-init
// unwraps it), with version 1 (and a config list) or version 2, or
// `config: disabled`. The contents of the interfaces are left to cloud-init.
// name is the file path used in messages.
func ValidateNetworkConfig(name string, data []byte) error {
	if err := validateNetworkConfig(data); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func validateNetworkConfig(data []byte) error {
	doc, err := parseYAML(data)
	if err != nil {
		return fmt.Errorf("line %d: YAML: %s", yamlErrorLine(data, err), yamlMessage(err))
	}
	if len(doc.Content) == 0 {
		return errors.New("file is empty; network-config must be a mapping with version: 1 or 2")
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: network-config must be a mapping, got %s", root.Line, describe(root))
	}
	if v := mapValue(root, "network"); v != nil {
		if v.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d: network must be a mapping, got %s", v.Line, describe(v))
		}
		root = v
	}
	if c := mapValue(root, "config"); c != nil && c.Kind == yaml.ScalarNode && c.Value == "disabled" {
		return nil
	}
	v := mapValue(root, "version")
	if v == nil {
		return fmt.Errorf("line %d: network-config has no version (1 or 2)", root.Line)
	}
	switch {
	case v.Kind == yaml.ScalarNode && v.Tag == "!!int" && v.Value == "1":
		c := mapValue(root, "config")
		if c == nil {
			return fmt.Errorf("line %d: version 1 network-config has no config list", root.Line)
		}
		if c.Kind != yaml.SequenceNode {
			return fmt.Errorf("line %d: config must be a list, got %s", c.Line, describe(c))
		}
	case v.Kind == yaml.ScalarNode && v.Tag == "!!int" && v.Value == "2":
		for _, key := range []string{"ethernets", "bonds", "bridges", "vlans", "wifis"} {
			if c := mapValue(root, key); c != nil && c.Kind != yaml.MappingNode {
				return fmt.Errorf("line %d: %s must be a mapping, got %s", c.Line, key, describe(c))
			}
		}
	default:
		return fmt.Errorf("line %d: version must be 1 or 2, got %q", v.Line, v.Value)
	}
	return nil
}

// mapValue returns the value of key in mapping m, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return resolve(m.Content[i+1])
		}
	}
	return nil
}
