package config

import (
	"errors"
	"strings"
)

// SplitArgs splits a string into words the way a POSIX shell would for
// plain words, single quotes, double quotes and backslashes. It expands
// nothing: EXTRA_ARGS reaches QEMU as data, never through a shell.
func SplitArgs(s string) ([]string, error) {
	var (
		args     []string
		cur      strings.Builder
		inWord   bool
		quote    rune // 0, '\'' or '"'
		escape   bool
		escapeDQ bool // a backslash inside double quotes
	)
	for _, r := range s {
		switch {
		case escape:
			cur.WriteRune(r)
			escape = false
		case escapeDQ:
			// Inside double quotes a backslash only escapes these; before
			// anything else it stays, as in sh.
			if !strings.ContainsRune("$`\"\\\n", r) {
				cur.WriteRune('\\')
			}
			cur.WriteRune(r)
			escapeDQ = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escapeDQ = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			escape, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if escape || escapeDQ {
		return nil, errors.New("ends in a lone backslash")
	}
	if quote != 0 {
		return nil, errors.New("unterminated " + string(quote) + " quote")
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}
