package config

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

var splitTests = []struct {
	in   string
	want []string
}{
	{"", nil},
	{"   \t\n ", nil},
	{"a", []string{"a"}},
	{"a b", []string{"a", "b"}},
	{"  a \t b\nc  ", []string{"a", "b", "c"}},
	{"-device virtio-balloon-pci -no-reboot", []string{"-device", "virtio-balloon-pci", "-no-reboot"}},
	{"'a b'", []string{"a b"}},
	{`"a b"`, []string{"a b"}},
	{`a\ b`, []string{"a b"}},
	{`''`, []string{""}},
	{`""`, []string{""}},
	{`a '' b`, []string{"a", "", "b"}},
	{`a''b`, []string{"ab"}},
	{`a"b c"d`, []string{"ab cd"}},
	{`"it's"`, []string{"it's"}},
	{`'say "hi"'`, []string{`say "hi"`}},
	{`"a\"b"`, []string{`a"b`}},
	{`"a\\b"`, []string{`a\b`}},
	{`'a\b'`, []string{`a\b`}},
	{`"a\b"`, []string{`a\b`}}, // inside "", \ escapes only $ ` " \ and newline
	{`"C:\dir"`, []string{`C:\dir`}},
	{"\"\\$HOME \\`x\\`\"", []string{"$HOME `x`"}},
	{`a\\b`, []string{`a\b`}},
	{`\'`, []string{`'`}},
	{`\"x\"`, []string{`"x"`}},
	{`'a'\''b'`, []string{`a'b`}},
	{`-append "console=ttyS0 root=/dev/vda1 quiet"`, []string{"-append", "console=ttyS0 root=/dev/vda1 quiet"}},
	{`-drive 'file=/my disk.img,if=virtio'`, []string{"-drive", "file=/my disk.img,if=virtio"}},
	{"'multi\nline'", []string{"multi\nline"}},
	{"é ü", []string{"é", "ü"}},
	{"$HOME *", []string{"$HOME", "*"}}, // nothing is expanded
}

func TestSplitArgs(t *testing.T) {
	for _, tc := range splitTests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := SplitArgs(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("SplitArgs(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	for _, bad := range []string{`'abc`, `"abc`, `abc\`, `a 'b" c`, `"\"`, `'it's'`} {
		t.Run("bad "+bad, func(t *testing.T) {
			if got, err := SplitArgs(bad); err == nil {
				t.Errorf("SplitArgs(%q) = %q, want an error", bad, got)
			}
		})
	}
}

// TestSplitArgsLikeShell checks the table against a real POSIX shell, with
// globbing off and no expansions in the inputs.
func TestSplitArgsLikeShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, tc := range splitTests {
		// eval would expand $ and `, and end the command at a newline.
		if strings.ContainsAny(tc.in, "$`\n") {
			continue
		}
		out, err := exec.Command(sh, "-c", `set -f; eval "set -- $1"; for a; do printf '%s\0' "$a"; done`, "_", tc.in).Output()
		if err != nil {
			t.Fatalf("sh on %q: %v", tc.in, err)
		}
		var want []string
		if len(out) > 0 {
			want = strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
		}
		got, _ := SplitArgs(tc.in)
		if !slices.Equal(got, want) {
			t.Errorf("SplitArgs(%q) = %q, sh gives %q", tc.in, got, want)
		}
	}
}

// isIFS is a POSIX shell's default field separator set.
func isIFS(r rune) bool { return r == ' ' || r == '\t' || r == '\n' }

func FuzzSplitArgs(f *testing.F) {
	for _, tc := range splitTests {
		f.Add(tc.in)
	}
	f.Add(`'abc`)
	f.Add(`a\`)
	f.Add("a\x00b")
	f.Fuzz(func(t *testing.T, s string) {
		args, err := SplitArgs(s)
		if err != nil {
			if args != nil {
				t.Errorf("SplitArgs(%q) returned %q with error %v", s, args, err)
			}
			return
		}
		if !utf8.ValidString(s) {
			// Invalid UTF-8 is not preserved byte for byte yet (see the
			// report); the properties below assume valid text.
			return
		}
		if !strings.ContainsAny(s, `'"\`) {
			if want := strings.FieldsFunc(s, isIFS); !slices.Equal(args, want) && !(len(args) == 0 && len(want) == 0) {
				t.Errorf("SplitArgs(%q) = %q, want %q (plain words)", s, args, want)
			}
			// strings.Fields also splits at \r, \v, \f and Unicode spaces,
			// which a shell keeps inside words.
			if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) && !isIFS(r) }) < 0 {
				if want := strings.Fields(s); !slices.Equal(args, want) && !(len(args) == 0 && len(want) == 0) {
					t.Errorf("SplitArgs(%q) = %q, strings.Fields gives %q", s, args, want)
				}
			}
		}
		// Quoting every word back must give the same words.
		var b bytes.Buffer
		for i, a := range args {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
		}
		again, err := SplitArgs(b.String())
		if err != nil || !slices.Equal(again, args) && !(len(again) == 0 && len(args) == 0) {
			t.Errorf("round trip of %q: %q, %v; want %q", s, again, err, args)
		}
	})
}

func TestSplitArgsErrors(t *testing.T) {
	_, err := SplitArgs(`"abc`)
	if err == nil || !strings.Contains(err.Error(), `unterminated " quote`) {
		t.Errorf("error %v", err)
	}
	_, err = SplitArgs(`abc\`)
	if err == nil || !strings.Contains(err.Error(), "lone backslash") {
		t.Errorf("error %v", err)
	}
}
