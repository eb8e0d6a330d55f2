package cloudinit

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// The test vectors published with Ulrich Drepper's SHA-crypt specification.
func TestSHA512CryptSpecVectors(t *testing.T) {
	tests := []struct {
		salt   string
		rounds int
		key    string
		want   string
	}{
		{"saltstring", 0, "Hello world!",
			"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"saltstringsaltstring", 10000, "Hello world!",
			"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
		{"toolongsaltstring", 5000, "This is just a test",
			"$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
		{"anotherlongsaltstring", 1400, "a very much longer text to encrypt.  This one even stretches over morethan one line.",
			"$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"},
		{"short", 77777, "we have a short salt string but not a short password",
			"$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
		{"asaltof16chars..", 123456, "a short string",
			"$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1"},
		{"roundstoolow", 10, "the minimum number is still observed",
			"$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."},
	}
	for _, tt := range tests {
		t.Run(tt.salt, func(t *testing.T) {
			if got := sha512Crypt([]byte(tt.key), []byte(tt.salt), tt.rounds); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestHashPasswordUsesDefaultRounds(t *testing.T) {
	want := "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
	if got := HashPassword("Hello world!", "saltstring"); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestHashPasswordMatchesOpenSSL cross-checks against `openssl passwd -6`
// when openssl is installed; the specification vectors above are the main
// check.
func TestHashPasswordMatchesOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	tests := []struct{ password, salt string }{
		{"password", "abcdefghABCDEFGH"},
		{"p@ss: wörd\t$", "./09azAZ"},
		{strings.Repeat("long password ", 10), "x"},
	}
	for _, tt := range tests {
		out, err := exec.Command(openssl, "passwd", "-6", "-salt", tt.salt, tt.password).Output()
		if err != nil {
			t.Fatalf("openssl passwd: %v", err)
		}
		want := strings.TrimSpace(string(out))
		if got := HashPassword(tt.password, tt.salt); got != want {
			t.Errorf("HashPassword(%q, %q)\ngot  %s\nwant %s", tt.password, tt.salt, got, want)
		}
	}
}

func TestNewSalt(t *testing.T) {
	valid := regexp.MustCompile(`^[./0-9A-Za-z]{16}$`)
	seen := map[string]bool{}
	for range 100 {
		salt, err := NewSalt()
		if err != nil {
			t.Fatal(err)
		}
		if !valid.MatchString(salt) {
			t.Fatalf("NewSalt() = %q, want 16 characters of [./0-9A-Za-z]", salt)
		}
		if seen[salt] {
			t.Fatalf("NewSalt() repeated %q", salt)
		}
		seen[salt] = true
	}
}

func TestNewPassword(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		pw, err := NewPassword(20)
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) != 20 || strings.Trim(pw, passwordAlphabet) != "" {
			t.Fatalf("password %q: want 20 characters of %q", pw, passwordAlphabet)
		}
		if seen[pw] {
			t.Fatalf("password %q came twice", pw)
		}
		seen[pw] = true
	}
}
