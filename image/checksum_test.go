package image

import (
	"strings"
	"testing"
)

func TestParseChecksums(t *testing.T) {
	a := strings.Repeat("a", 64)
	b := strings.Repeat("B", 64)
	long := strings.Repeat("c", 128)
	tests := []struct {
		name, file, lookup string
		want               Digest
		found              bool
	}{
		{"GNU text", a + "  x.img\n" + strings.ToLower(b) + "  y.img\n", "y.img", Digest{"sha256", strings.ToLower(b)}, true},
		{"GNU binary", a + " *x.img\n", "x.img", Digest{"sha256", a}, true},
		{"upper-case hex", b + "  x.img\n" + a + "  z.img\n", "x.img", Digest{"sha256", strings.ToLower(b)}, true},
		{"CRLF", a + "  x.img\r\n" + b + "  y.img\r\n", "x.img", Digest{"sha256", a}, true},
		{"./ prefix", a + "  ./x.img\n" + b + "  ./y.img\n", "x.img", Digest{"sha256", a}, true},
		{"BSD", "SHA256 (x.img) = " + a + "\nSHA256 (y.img) = " + b + "\n", "x.img", Digest{"sha256", a}, true},
		{"BSD name with parentheses", "SHA256 (x (1).img) = " + a + "\nSHA256 (y.img) = " + b + "\n", "x (1).img", Digest{"sha256", a}, true},
		{"BSD sha512", "SHA512 (x.img) = " + long + "\nSHA512 (y.img) = " + long + "\n", "x.img", Digest{"sha512", long}, true},
		{"sha256 preferred", "SHA512 (x.img) = " + long + "\nSHA256 (x.img) = " + a + "\n", "x.img", Digest{"sha256", a}, true},
		{"BSD tag and length disagree", "SHA512 (x.img) = " + a + "\n", "x.img", Digest{}, false},
		{"Fedora CHECKSUM", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n# Fedora-Cloud.qcow2: 123 bytes\nSHA256 (Fedora-Cloud.qcow2) = " + a +
			"\nSHA256 (Fedora-Cloud.raw.xz) = " + b + "\n-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n-----END PGP SIGNATURE-----\n",
			"Fedora-Cloud.qcow2", Digest{"sha256", a}, true},
		{"escaped GNU name", `\` + a + "  x\\\\y.img\n" + b + "  z.img\n", `x\y.img`, Digest{"sha256", a}, true},
		{"single entry, other name", "SHA256 (Rocky-9.6.qcow2) = " + a + "\n", "Rocky-latest.qcow2", Digest{"sha256", a}, true},
		{"lone hash", a + "\n", "anything.img", Digest{"sha256", a}, true},
		{"two entries, no match", a + "  x.img\n" + b + "  y.img\n", "z.img", Digest{}, false},
		{"short hash", "abc  x.img\n", "x.img", Digest{}, false},
		{"not hex", strings.Repeat("g", 64) + "  x.img\n", "x.img", Digest{}, false},
		{"empty", "", "x.img", Digest{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := ParseChecksums([]byte(tt.file)).Lookup(tt.lookup)
			if got != tt.want || found != tt.found {
				t.Errorf("Lookup(%q) = %v, %v; want %v, %v", tt.lookup, got, found, tt.want, tt.found)
			}
		})
	}
}

func TestParseSHA256(t *testing.T) {
	a := strings.Repeat("A", 64)
	for _, s := range []string{a, "sha256:" + a, " " + a + "\n"} {
		if d, err := ParseSHA256(s); err != nil || d.Hex != strings.ToLower(a) {
			t.Errorf("ParseSHA256(%q) = %v, %v", s, d, err)
		}
	}
	for _, s := range []string{"", "abc", strings.Repeat("z", 64), strings.Repeat("a", 128), "sha512:" + a} {
		if _, err := ParseSHA256(s); err == nil {
			t.Errorf("ParseSHA256(%q) accepted", s)
		}
	}
}

func FuzzParseChecksums(f *testing.F) {
	a := strings.Repeat("a", 64)
	f.Add([]byte(a+"  x.img\n"), "x.img")
	f.Add([]byte("SHA256 (x.img) = "+a+"\n"), "x.img")
	f.Add([]byte(`\`+a+"  x\\ny\n"), "x\ny")
	f.Add([]byte("SHA512 (() = ) = "+strings.Repeat("f", 128)), "(")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		c := ParseChecksums(data)
		for _, e := range c.entries {
			if algoForLen(len(e.sum.Hex)) != e.sum.Algo || !isHex(e.sum.Hex) || e.sum.Hex != strings.ToLower(e.sum.Hex) {
				t.Fatalf("entry %+v is not a well-formed digest", e)
			}
		}
		if d, ok := c.Lookup(name); ok && d.Hex == "" {
			t.Fatal("found an empty digest")
		}
		// A line in coreutils' format, whatever the name, is read back.
		name = strings.NewReplacer("\n", "_", "\r", "_").Replace(name)
		if strings.TrimSpace(name) != "" {
			line := a + "  " + name + "\n"
			if d, ok := ParseChecksums([]byte(line)).Lookup("any"); !ok || d.Hex != a {
				t.Fatalf("line %q: Lookup = %v, %v", line, d, ok)
			}
		}
	})
}
