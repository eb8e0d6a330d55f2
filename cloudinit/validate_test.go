package cloudinit

import (
	"bytes"
	"compress/gzip"
	"regexp"
	"strings"
	"testing"
)

func gzipped(t testing.TB, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestValidateUserData(t *testing.T) {
	const name = "/home/me/user-data.yaml"
	tests := []struct {
		desc    string
		data    string
		wantErr string // "" for valid; otherwise the whole message
	}{
		{desc: "valid cloud-config", data: "#cloud-config\n" +
			"users:\n  - default\n  - name: bob\n    groups: [adm]\n" +
			"runcmd:\n  - echo hi\n  - [ls, -l]\n" +
			"write_files:\n  - path: /etc/motd\n    content: hello\n" +
			"packages: [curl]\n"},
		{desc: "users as a string is allowed", data: "#cloud-config\nusers: bob\ngroups: {admins: [bob]}\n"},
		{desc: "header only", data: "#cloud-config\n"},
		{desc: "null document", data: "#cloud-config\n~\n"},
		{desc: "header case and leading space", data: "\n  #Cloud-Config\nruncmd: [true]\n"},
		{desc: "list through an alias", data: "#cloud-config\nx-cmds: &cmds [a, b]\nruncmd: *cmds\n"},
		{desc: "script", data: "#!/bin/sh\necho hi\n"},
		{desc: "include", data: "#include\nhttps://example.com/ud\n"},
		{desc: "boothook", data: "#cloud-boothook\n#!/bin/sh\n"},
		{desc: "part-handler", data: "#part-handler\ndef list_types(): pass\n"},
		{desc: "archive is not read as cloud-config", data: "#cloud-config-archive\n- type: text/x-shellscript\n"},
		{desc: "jinja", data: "## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n"},
		{desc: "MIME", data: "Content-Type: multipart/mixed; boundary=\"X\"\nMIME-Version: 1.0\n\n--X--\n"},
		{desc: "MIME-Version first", data: "MIME-Version: 1.0\nContent-Type: text/x-shellscript\n\necho hi\n"},

		{desc: "unclosed flow list points at its line", data: "#cloud-config\nruncmd: [a, b\nhostname: x\n",
			wantErr: name + ": line 2: YAML: did not find expected ',' or ']'"},
		{desc: "bad YAML deep in a block", data: "#cloud-config\nruncmd:\n  - a\n b: c\n",
			wantErr: name + ": line 4: YAML: did not find expected key"},
		{desc: "unterminated quote", data: "#cloud-config\nhostname: \"x\nruncmd: []\n",
			wantErr: name + ": line 2: YAML: found unexpected end of stream"},
		{desc: "not fooled by an earlier multi-line quote", data: "#cloud-config\na: \"multi\n  line\"\nb: \"unterminated\nc: 1\n",
			wantErr: name + ": line 4: YAML: found unexpected end of stream"},
		{desc: "not fooled by an earlier multi-line list", data: "#cloud-config\na: [1,\n  2]\nruncmd:\n  - a\n b: c\n",
			wantErr: name + ": line 6: YAML: did not find expected key"},
		{desc: "tab indentation", data: "#cloud-config\nhostname: x\n\truncmd: []\n",
			wantErr: name + ": line 3: YAML: found a tab character that violates indentation"},
		{desc: "unknown anchor", data: "#cloud-config\nhostname: x\nruncmd: *nope\n",
			wantErr: name + ": line 3: YAML: unknown anchor 'nope' referenced"},
		{desc: "two documents", data: "#cloud-config\nhostname: x\n---\nruncmd: []\n",
			wantErr: name + ": line 3: YAML: expected a single document, found another"},
		{desc: "mapping where list required", data: "#cloud-config\nruncmd:\n  first: echo hi\n",
			wantErr: name + ": line 3: runcmd must be a list, got a mapping"},
		{desc: "string where list required", data: "#cloud-config\nhostname: x\npackages: curl\n",
			wantErr: name + ": line 3: packages must be a list, got a string"},
		{desc: "empty list key", data: "#cloud-config\nbootcmd:\n",
			wantErr: name + ": line 2: bootcmd must be a list, got an empty value"},
		{desc: "not a mapping", data: "#cloud-config\n- runcmd\n",
			wantErr: name + ": line 2: cloud-config must be a mapping, got a list"},
		{desc: "write_files item without path", data: "#cloud-config\nwrite_files:\n  - path: /a\n  - content: x\n    owner: root\n",
			wantErr: name + ": line 4: write_files item 2 has no path"},
		{desc: "write_files item with empty path", data: "#cloud-config\nwrite_files:\n  - path:\n",
			wantErr: name + ": line 3: write_files item 1 has no path"},
		{desc: "write_files item not a mapping", data: "#cloud-config\nwrite_files:\n  - /etc/motd\n",
			wantErr: name + ": line 3: write_files item 1 must be a mapping, got a string"},
		{desc: "missing header", data: "runcmd:\n  - echo hi\n",
			wantErr: name + ": unknown format; " + acceptedFormats},
		{desc: "empty file", data: "",
			wantErr: name + ": file is empty; " + acceptedFormats},
		{desc: "blank file", data: " \n\n",
			wantErr: name + ": file is empty; " + acceptedFormats},
		{desc: "jinja without a second header", data: "## template: jinja\nruncmd: []\n",
			wantErr: name + ": the line after ## template: jinja must start with another header; " + acceptedFormats},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			err := ValidateUserData(name, []byte(tt.data))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q", tt.wantErr)
			case tt.wantErr != "" && err.Error() != tt.wantErr:
				t.Fatalf("error\n got %q\nwant %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateUserDataGzipPassesThrough(t *testing.T) {
	// The content is not a valid header, yet gzip is accepted unchecked.
	if err := ValidateUserData("ud.gz", gzipped(t, "no header here")); err != nil {
		t.Fatal(err)
	}
}

func FuzzValidateUserData(f *testing.F) {
	for _, seed := range []string{
		"#cloud-config\nruncmd:\n  - echo hi\nwrite_files:\n  - path: /a\n",
		"#cloud-config\nruncmd: [a, b\n",
		"#cloud-config\na: &x [*x]\nruncmd: *x\n",
		"#cloud-config\n---\n---\n",
		"#cloud-config\n!!null {a: 1}\n",
		"#cloud-config\nwrite_files: [[], {path: ~}, {<<: {path: a}}]\n",
		"## template: jinja\n#!/bin/sh\n",
		"#!/bin/sh\n",
		"MIME-Version: 1.0\n",
		"\x1f\x8b",
		"",
	} {
		f.Add([]byte(seed))
	}
	lineErr := regexp.MustCompile(`^fuzz: line [1-9][0-9]*: `)
	f.Fuzz(func(t *testing.T, data []byte) {
		err := ValidateUserData("fuzz", data)
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz: ") {
			t.Fatalf("error does not name the file: %v", err)
		}
		// With the header in front every input takes the YAML path, whose
		// errors must all point at a line.
		cc := append([]byte("#cloud-config\n"), data...)
		if err := ValidateUserData("fuzz", cc); err != nil && !lineErr.MatchString(err.Error()) {
			t.Fatalf("error does not point at a line: %v", err)
		}
	})
}
