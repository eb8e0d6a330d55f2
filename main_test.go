package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// shWords has a POSIX shell read line and returns the words it sees.
func shWords(t *testing.T, line string) []string {
	t.Helper()
	out, err := exec.Command("sh", "-c", `eval "set -- $1"; for a; do printf '%s\0' "$a"; done`, "_", line).Output()
	if err != nil {
		t.Fatalf("sh reading %q: %v", line, err)
	}
	if len(out) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
}

func TestShellQuoteRoundTrip(t *testing.T) {
	tests := [][]string{
		{"qemu-system-x86_64", "-m", "4096"},
		{"a b", "c\td", "e\nf"},
		{"it's", `say "hi"`, `back\slash`, `'`, `''`, `"`},
		{"", "x", ""},
		{"file=/data,,1/disk.qcow2,if=none", "a,b"},
		{"$HOME", "${x}", "$(id)", "`id`", "!", "!!"},
		{"*", "?", "[a]", "~", "~root", "a=b", "#comment", "x#y"},
		{";", "&", "|", ">", "<", "(", ")", "{", "}", "&&"},
		{"-append", "console=ttyS0 root=/dev/vda1 quiet"},
		{"héllo wörld", "日本", "\x01\x7f"},
		{"%", "+", "@", ":", ".", "/", "-", "_"},
	}
	for _, argv := range tests {
		line := shellQuote(argv)
		if strings.Contains(line, "\n") && !slices.ContainsFunc(argv, func(s string) bool { return strings.Contains(s, "\n") }) {
			t.Errorf("shellQuote(%q) = %q spans lines", argv, line)
		}
		if got := shWords(t, line); !slices.Equal(got, argv) {
			t.Errorf("shellQuote(%q) = %s\nsh reads it back as %q", argv, line, got)
		}
	}
}

func TestShellQuoteLeavesPlainWords(t *testing.T) {
	argv := []string{"qemu-system-x86_64", "-name", "guest=vm", "-drive", "file=/data/vms/vm/disk.qcow2,if=none", "-vnc", ":0", "user@host", "50%"}
	if got, want := shellQuote(argv), strings.Join(argv, " "); got != want {
		t.Errorf("shellQuote = %q, want %q", got, want)
	}
	if got := shellQuote([]string{"a b", ""}); got != `'a b' ''` {
		t.Errorf("shellQuote = %q", got)
	}
	if got := shellQuote([]string{"it's"}); got != `'it'\''s'` {
		t.Errorf("shellQuote = %q", got)
	}
}

// The real binary, built once.
const testVersion = "test-1.2.3"

var built = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "vmrunner-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "vmrunner")
	cmd := exec.Command("go", "build", "-ldflags=-X main.version="+testVersion, "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", errors.New(err.Error() + "\n" + string(out))
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := built(); err == nil {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// runBinary runs the built vmrunner with only env (plus PATH) as its
// environment.
func runBinary(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin, err := built()
	if err != nil {
		t.Fatalf("go build: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
	case err != nil:
		t.Fatal(err)
	}
	return result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

// binEnv is a configuration that needs nothing from the host: no
// firmware, no disk image, no bridge.
func binEnv(t *testing.T) (map[string]string, string) {
	home := t.TempDir()
	data := filepath.Join(home, "data dir's")
	return map[string]string{
		"HOME":       home,
		"DATA_DIR":   data,
		"GUEST_NAME": "probe",
		"BOOT_FROM":  "blank",
		"BOOT_MODE":  "legacy",
		"LOG_FORMAT": "json",
	}, data
}

func assertNotCreated(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s was created (%v)", path, err)
	}
}

func TestBinaryDryRun(t *testing.T) {
	env, data := binEnv(t)
	env["PORT_FWD"] = "8080:80,5353:53/udp"
	env["EXTRA_ARGS"] = `-fw_cfg 'name=opt/x,string=a b' -no-reboot`
	r := runBinary(t, env, "--dry-run")
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	if strings.Count(r.stdout, "\n") != 1 || !strings.HasSuffix(r.stdout, "\n") {
		t.Fatalf("stdout is not one line: %q", r.stdout)
	}
	if !strings.HasPrefix(r.stdout, "qemu-system-x86_64 ") {
		t.Errorf("stdout does not start with qemu-system-x86_64: %q", r.stdout)
	}
	argv := shWords(t, strings.TrimSuffix(r.stdout, "\n"))
	state := filepath.Join(data, "vms", "probe")
	for _, want := range [][]string{
		{"-name", "guest=probe"},
		{"-drive", "file=" + state + "/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,cache=none,aio=native"},
		{"-qmp", "unix:" + state + "/qmp.sock,server=on,wait=off"},
	} {
		if !containsSeq(argv, want) {
			t.Errorf("command line lacks %q:\n%q", want, argv)
		}
	}
	if !slices.Equal(argv[len(argv)-3:], []string{"-fw_cfg", "name=opt/x,string=a b", "-no-reboot"}) {
		t.Errorf("EXTRA_ARGS not last: %q", argv)
	}
	var netdev string
	for i, a := range argv {
		if a == "-netdev" && i+1 < len(argv) {
			netdev = argv[i+1]
		}
	}
	if !strings.Contains(netdev, "hostfwd=tcp:0.0.0.0:2222-:22,hostfwd=tcp:0.0.0.0:8080-:80,hostfwd=udp:0.0.0.0:5353-:53") {
		t.Errorf("netdev %q lacks the forwards", netdev)
	}
	assertNotCreated(t, data)
}

func containsSeq(s, seq []string) bool {
	for i := 0; i+len(seq) <= len(s); i++ {
		if slices.Equal(s[i:i+len(seq)], seq) {
			return true
		}
	}
	return false
}

func TestBinaryConfigError(t *testing.T) {
	for _, tc := range []struct {
		name, key, value string
		want             []string
	}{
		{"bad MEMORY", "MEMORY", "lots", []string{`MEMORY="lots"`, "accepted:"}},
		{"bad NETWORK_MODE", "NETWORK_MODE", "host", []string{`NETWORK_MODE="host"`, "nat, bridge, direct, container or none"}},
		{"bad NIC index", "NETWORK9_MODE", "nat", []string{`NETWORK9_MODE="nat"`}},
		{"bad DISK_TYPE", "DISK_TYPE", "floppy", []string{`DISK_TYPE="floppy"`, "virtio, scsi, nvme, ide or usb"}},
		{"bad disk number", "DISK7_SIZE", "1G", []string{`DISK7_SIZE="1G"`, "DISK2_SIZE to DISK6_SIZE"}},
		{"missing DEVICE", "DEVICE", "/dev/vmrunner-no-such-disk", []string{`DEVICE="/dev/vmrunner-no-such-disk"`, "no such file", "block device or regular file"}},
		{"DEVICE a character device", "DEVICE2", "/dev/null", []string{`DEVICE2="/dev/null"`, "is a character device"}},
		// Caught by the plan, before any download could start.
		{"unknown distro", "DISTRO", "ubunto-2404", []string{`DISTRO="ubunto-2404"`, "did you mean ubuntu-2404"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, data := binEnv(t)
			env[tc.key] = tc.value
			if tc.key == "DISTRO" {
				delete(env, "BOOT_FROM") // DISTRO only counts without BOOT_FROM
			}
			for _, mode := range [][]string{{"--dry-run"}, {}} {
				r := runBinary(t, env, mode...)
				if r.code != 2 {
					t.Errorf("%q: exit %d, want 2\nstderr: %s", mode, r.code, r.stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("%q: stderr lacks %q:\n%s", mode, w, r.stderr)
					}
				}
				if r.stdout != "" {
					t.Errorf("%q: stdout %q", mode, r.stdout)
				}
				assertNotCreated(t, data)
			}
		})
	}
}

func TestBinaryHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "help"} {
		r := runBinary(t, nil, arg)
		if r.code != 0 {
			t.Fatalf("%s: exit %d", arg, r.code)
		}
		for _, v := range []string{"NETWORK_MODE", "NETWORK_BRIDGE", "NETWORK_MTU", "SSH_PORT", "PORT_FWD", "DATA_DIR",
			"GUEST_NAME", "MEMORY", "CPUS", "BOOT_FROM", "CLOUD_INIT_USER_DATA", "GUEST_PASSWORD", "EXTRA_ARGS", "usage:"} {
			if !strings.Contains(r.stdout, v) {
				t.Errorf("%s does not list %s", arg, v)
			}
		}
	}
}

func TestBinaryShowConfig(t *testing.T) {
	env, data := binEnv(t)
	env["GUEST_PASSWORD"] = "hunter2-secret"
	env["REDFISH_PASSWORD"] = "redfish-secret"
	r := runBinary(t, env, "--show-config")
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, "hunter2") || strings.Contains(r.stdout+r.stderr, "redfish-secret") {
		t.Errorf("--show-config shows a password:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "GUEST_PASSWORD") || !strings.Contains(r.stdout, "********") || !strings.Contains(r.stdout, "probe") {
		t.Errorf("--show-config output:\n%s", r.stdout)
	}
	assertNotCreated(t, data)

	delete(env, "BOOT_FROM")
	env["DISTRO"] = "no-such-distro"
	if r := runBinary(t, env, "--show-config"); r.code != 2 || !strings.Contains(r.stderr, "DISTRO") {
		t.Errorf("--show-config with DISTRO=no-such-distro: exit %d, want 2 naming DISTRO\nstderr: %s", r.code, r.stderr)
	}
	assertNotCreated(t, data)
}

func TestBinaryVersion(t *testing.T) {
	for _, arg := range []string{"--version", "version"} {
		r := runBinary(t, nil, arg)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "vmrunner "+testVersion) || strings.Count(r.stdout, "\n") != 1 {
			t.Errorf("%s: exit %d, stdout %q", arg, r.code, r.stdout)
		}
		if !strings.Contains(r.stdout, "go1.") {
			t.Errorf("%s: no Go version in %q", arg, r.stdout)
		}
	}
}

func TestBinaryBadArguments(t *testing.T) {
	env, data := binEnv(t)
	for _, args := range [][]string{{"--bogus"}, {"run"}, {"--dry-run", "--show-config"}, {"--dry-run", "extra"}} {
		r := runBinary(t, env, args...)
		if r.code != 2 {
			t.Errorf("%q: exit %d, want 2", args, r.code)
		}
		if !strings.Contains(r.stderr, "usage:") || r.stdout != "" {
			t.Errorf("%q: stdout %q stderr %q", args, r.stdout, r.stderr)
		}
		if len(args) == 1 && !strings.Contains(r.stderr, `unknown argument "`+args[0]+`"`) {
			t.Errorf("%q: stderr does not name the argument: %q", args, r.stderr)
		}
	}
	assertNotCreated(t, data)
}

func TestBinaryHealthWithoutVM(t *testing.T) {
	env, data := binEnv(t)
	r := runBinary(t, env, "health")
	if r.code != 1 {
		t.Errorf("health: exit %d, want 1\nstderr: %s", r.code, r.stderr)
	}
	assertNotCreated(t, data)
}

// TestBinaryClientVerbsWithoutVM: a verb's bad arguments exit 2 with the
// usage; a good one without a running vmrunner exits 1 saying so, and
// reads no configuration but DATA_DIR and GUEST_NAME (a broken MEMORY
// does not matter) and creates nothing.
func TestBinaryClientVerbsWithoutVM(t *testing.T) {
	env, data := binEnv(t)
	env["MEMORY"] = "lots"
	for _, args := range [][]string{{"boot"}, {"boot", "cd", "--twice"}, {"status", "extra"}, {"media", "insert"}, {"media", "rewind"}, {"console", "x"}, {"health", "--json"}} {
		if r := runBinary(t, env, args...); r.code != 2 || !strings.Contains(r.stderr, "usage:") {
			t.Errorf("%q: exit %d, stderr %q; want 2 with the usage", args, r.code, r.stderr)
		}
	}
	for _, args := range [][]string{{"status"}, {"start"}, {"stop"}, {"boot", "cd", "--once"}, {"health", "--alive"}, {"console"}} {
		if r := runBinary(t, env, args...); r.code != 1 || !strings.Contains(r.stderr, "no vmrunner answers") {
			t.Errorf("%q: exit %d, stderr %q; want 1, no vmrunner answers", args, r.code, r.stderr)
		}
	}
	assertNotCreated(t, data)
}

func TestReadPassword(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"s3cret\n", "s3cret", ""},
		{"s3cret\r\nrest\n", "s3cret", ""},
		{"no-newline", "no-newline", ""},
		{"", "", "no password"},
		{"\n", "", "no password"},
	} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.WriteString(tc.in)
		w.Close()
		got, err := readPassword(r)
		r.Close()
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("readPassword(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}
