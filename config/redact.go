package config

import (
	"regexp"
	"strings"
)

// Masked stands for a secret in anything vmrunner prints.
const Masked = "********"

// secretVars are variables whose whole value is a secret.
var secretVars = map[string]bool{"GUEST_PASSWORD": true, "REDFISH_PASSWORD": true, "IPMI_PASSWORD": true}

var (
	// urlUserInfo is the user:password@ of a URL; the user name goes too,
	// since tokens are often passed as the user.
	urlUserInfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s"'\\]*@`)
	// urlQuery is a URL's query string up to its fragment or the end of the
	// value: signed URLs carry their signature there.
	urlQuery = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^?#\s"'\\]*\?)[^#\s"'\\]+`)
	// secretOption is a password-like key=value in a QEMU option list;
	// "data" only counts in a secret object (see secretObject).
	secretOption = regexp.MustCompile(`(?i)(^|[,\s"'])((?:[a-z0-9_.-]*[._-])?(?:password|passwd|passphrase|secret-data|key-secret-data)=)((?:[^,\s"'\\]|,,)*)`)
	// secretObject is `-object secret,…` (also secret_keyring): its data=
	// holds the secret itself.
	secretObject = regexp.MustCompile(`(?i)(secret(?:_keyring)?,(?:[^\s"'\\]*?,)?data=)((?:[^,\s"'\\]|,,)*)`)
)

// Redact masks secrets inside a value or a log line: URL user info and
// query strings, password-like QEMU options and the data of `-object
// secret`. It keeps everything else, so a line stays useful.
func Redact(s string) string {
	// Each expression runs only where its literal part occurs: most lines
	// have none, and a scan for one is far cheaper than the expression.
	if strings.Contains(s, "://") {
		s = urlUserInfo.ReplaceAllString(s, "${1}"+Masked+"@")
		if strings.Contains(s, "?") {
			s = urlQuery.ReplaceAllString(s, "${1}"+Masked)
		}
	}
	if !strings.Contains(s, "=") {
		return s
	}
	lower := strings.ToLower(s)
	if strings.Contains(lower, "data=") {
		s = secretObject.ReplaceAllString(s, "${1}"+Masked)
	}
	if strings.Contains(lower, "pass") || strings.Contains(lower, "secret-data") {
		s = secretOption.ReplaceAllString(s, "${1}${2}"+Masked)
	}
	return s
}

// RedactArgs redacts each argument of a command line.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = Redact(a)
	}
	return out
}

// RedactValue is what may be shown of variable name's value.
func RedactValue(name, value string) string {
	if secretVars[name] {
		if value == "" {
			return ""
		}
		return Masked
	}
	return Redact(value)
}

// Secrets are the literal secret values of the configuration, for masking
// them wherever they turn up (a password inside EXTRA_ARGS or an error).
// Values shorter than 4 bytes are left out: masking them would garble
// every line while hiding nothing worth hiding.
func (c *Config) Secrets() []string {
	var out []string
	for _, s := range []string{c.GuestPassword, c.Redfish.Password, c.IPMI.Password} {
		if len(s) >= 4 {
			out = append(out, s)
		}
	}
	return out
}
