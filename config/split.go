package config

import (
	"errors"
	"strings"
)

// SplitArgs splits a string into words the way a POSIX shell would for
// plain words, single quotes, double quotes and backslashes. It expands
// nothing: EXTRA_ARGS reaches QEMU as data, never through a shell. It works
// on bytes, so arguments that are not UTF-8 (file names) pass unchanged.
func SplitArgs(s string) ([]string, error) {
	var (
		args     []string
		cur      strings.Builder
		inWord   bool
		quote    byte // 0, '\'' or '"'
		escape   bool
		escapeDQ bool // a backslash inside double quotes
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escape:
			if c != '\n' { // backslash-newline joins lines, as in sh
				cur.WriteByte(c)
			}
			escape = false
		case escapeDQ:
			// Inside double quotes a backslash only escapes these; before
			// anything else it stays, as in sh.
			switch c {
			case '\n':
			case '$', '`', '"', '\\':
				cur.WriteByte(c)
			default:
				cur.WriteByte('\\')
				cur.WriteByte(c)
			}
			escapeDQ = false
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case quote == '"':
			switch c {
			case '"':
				quote = 0
			case '\\':
				escapeDQ = true
			default:
				cur.WriteByte(c)
			}
		case c == '\\':
			escape, inWord = true, true
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
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
