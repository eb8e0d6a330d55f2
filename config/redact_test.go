package config

import (
	"bytes"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://user:pa55@example.test/disk.qcow2", "https://********@example.test/disk.qcow2"},
		{"https://token@example.test/a", "https://********@example.test/a"},
		{"https://example.test/disk.qcow2?X-Amz-Signature=abc&x=1#frag", "https://example.test/disk.qcow2?********#frag"},
		{"https://u:p@example.test/a?sig=1", "https://********@example.test/a?********"},
		{`fetching "https://u:p@h/x?s=2": 403`, `fetching "https://********@h/x?********": 403`},
		{"-object secret,id=sec0,data=hunter2,format=raw", "-object secret,id=sec0,data=********,format=raw"},
		{"secret,id=s,data=a,,b,format=raw", "secret,id=s,data=********,format=raw"},
		{"secret_keyring,id=s,data=xyz", "secret_keyring,id=s,data=********"},
		{"-spice port=5930,password=topsecret", "-spice port=5930,password=********"},
		{"driver=iscsi,user=bob,password=p", "driver=iscsi,user=bob,password=********"},
		{"file.password=p,file.user=u", "file.password=********,file.user=u"},
		// Left alone: no secret in them.
		{"-object memory-backend-file,id=m,size=1G,data=", "-object memory-backend-file,id=m,size=1G,data="},
		{"/images/user@host.qcow2", "/images/user@host.qcow2"},
		{"https://example.test/path@x", "https://example.test/path@x"},
		{"-drive file=/x?y.img", "-drive file=/x?y.img"},
		{"plain words", "plain words"},
	} {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactValue(t *testing.T) {
	if got := RedactValue("GUEST_PASSWORD", "x"); got != Masked {
		t.Errorf("GUEST_PASSWORD shown as %q", got)
	}
	if got := RedactValue("GUEST_PASSWORD", ""); got != "" {
		t.Errorf("empty GUEST_PASSWORD shown as %q", got)
	}
	if got := RedactValue("BOOT_FROM", "https://a:b@h/x"); got != "https://********@h/x" {
		t.Errorf("BOOT_FROM shown as %q", got)
	}
}

// TestSecretsAbsentFromShowAndErrors: --show-config and configuration
// errors mask secrets inside values.
func TestSecretsAbsentFromShowAndErrors(t *testing.T) {
	env := map[string]string{
		"BOOT_FROM":      "https://alice:url-pass@images.test/disk.qcow2?token=url-token",
		"EXTRA_ARGS":     "-object secret,id=s0,data=obj-secret -spice port=5930,password=spice-pass",
		"GUEST_PASSWORD": "guest-pass-1",
		"KERNEL_CMDLINE": "x",
		"CATALOG":        "https://bob:cat-pass@catalog.test/c.yaml?sig=cat-sig",
	}
	secrets := []string{"alice", "url-pass", "url-token", "obj-secret", "spice-pass", "guest-pass-1", "bob", "cat-pass", "cat-sig"}
	_, err := load(t, env)
	if err == nil {
		t.Fatal("KERNEL_CMDLINE without KERNEL was accepted")
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("configuration error shows %q:\n%v", s, err)
		}
	}
	delete(env, "KERNEL_CMDLINE")
	delete(env, "CATALOG") // not fetched by Load with BOOT_FROM set
	c := mustLoad(t, env)
	c.Catalog = "https://bob:cat-pass@catalog.test/c.yaml?sig=cat-sig"
	var buf bytes.Buffer
	if err := WriteShow(&buf, c); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(buf.String(), s) {
			t.Errorf("--show-config shows %q:\n%s", s, buf.String())
		}
	}
	for _, want := range []string{"https://********@images.test/disk.qcow2?********", "data=********", "password=********"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("--show-config lacks %q:\n%s", want, buf.String())
		}
	}
}

func FuzzRedact(f *testing.F) {
	for _, s := range []string{"https://u:p@h/x?q=1", "secret,id=a,data=b", "password=x,,y", "a=b", "@?="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		once := Redact(s)
		if twice := Redact(once); twice != once {
			t.Errorf("Redact is not idempotent: %q -> %q -> %q", s, once, twice)
		}
		for _, m := range urlUserInfo.FindAllStringSubmatch(once, -1) {
			if !strings.HasSuffix(m[0], Masked+"@") {
				t.Errorf("user info left in %q: %q", once, m[0])
			}
		}
	})
}

// BenchmarkRedactLogLine: the cost redaction adds to a log line like the
// one that starts QEMU (about 1.4 KB, one secret object).
func BenchmarkRedactLogLine(b *testing.B) {
	line := strings.Repeat(`"-drive","file=/data/vms/vm/disk.qcow2,if=none,id=disk0,format=qcow2",`, 18) +
		`"-object","secret,id=sec0,data=hunter2,format=raw"`
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		Redact(line)
	}
}

// BenchmarkRedactPlain: a line with nothing to mask, the common case.
func BenchmarkRedactPlain(b *testing.B) {
	line := `{"level":"info","msg":"QEMU started","pid":11197}`
	for b.Loop() {
		Redact(line)
	}
}
