package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Hostile inputs against the state folder, the logs and the host's links
// (issue 9): each test tries the attack and shows that nothing leaked and
// nothing outside was touched.

// runTo runs vmrunner to its end with env (nothing else inherited but
// PATH and HOME) and returns its exit status and log.
func runTo(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("vmrunner %v still running after 2 minutes\n%s", args, errOut.String())
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// markerQEMU is a stand-in QEMU that only leaves a file behind: it must
// never run when start-up refuses the state folder.
func markerQEMU(t *testing.T) (binary, marker string) {
	dir := t.TempDir()
	marker = filepath.Join(dir, "qemu-ran")
	binary = filepath.Join(dir, "qemu")
	if err := os.WriteFile(binary, []byte("#!/bin/sh\ntouch "+marker+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return binary, marker
}

// TestHygienePlantedSymlinksRefused plants, before a start, a symlink in the
// state folder under the name of each file vmrunner or QEMU opens there,
// pointing at a file outside (as /etc/cron.d/x would be). Start-up must
// refuse with a message naming the file, write nothing at the target and
// never start QEMU.
func TestHygienePlantedSymlinksRefused(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"serial.log", "serial.log.1", "mac-1", "lock", "seed.iso", "password-salt", "efivars.fd",
		"efivars.fd.tmp", "disk.qcow2", "disk2.qcow2", "guest-password", "ephemeral"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := stubEnv(t)
			env["DISK2_SIZE"] = "64M"
			var marker string
			env["QEMU_BINARY"], marker = markerQEMU(t)
			state := filepath.Join(env["DATA_DIR"], "vms", env["GUEST_NAME"])
			if err := os.MkdirAll(state, 0o700); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(t.TempDir(), "cron-x")
			const content = "# the attacker's target, untouched\n"
			if err := os.WriteFile(target, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(target, old, old); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(state, name)
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			code, _, log := runTo(t, env)
			if code != 1 {
				t.Errorf("exit status %d, want 1 (start-up refused)\n%s", code, log)
			}
			if !strings.Contains(log, link+" is a symlink") {
				t.Errorf("the log does not say %s is a symlink:\n%s", link, log)
			}
			st, err := os.Stat(target)
			if b, _ := os.ReadFile(target); err != nil || string(b) != content || !st.ModTime().Equal(old) {
				t.Errorf("the target changed: %q, modified %v (want %v), %v", b, st.ModTime(), old, err)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("QEMU was started")
			}
			entries, _ := os.ReadDir(state)
			if len(entries) != 1 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("the state folder holds %q; want only the planted link", names)
			}
		})
	}
}

// TestHygieneForeignOwnerRefused: a state file, or the state folder, that
// another user owns is refused (that user could otherwise choose what a
// root vmrunner reads or writes), and so is a state folder that is a
// symlink. A state folder with a wider mode is narrowed to 0700.
func TestHygieneForeignOwnerRefused(t *testing.T) {
	needRoot(t)
	t.Parallel()
	const nobody = 65534
	for _, tt := range []struct {
		name  string
		plant func(t *testing.T, state string)
		want  string
	}{
		{"password-salt of another user", func(t *testing.T, state string) {
			f := filepath.Join(state, "password-salt")
			writeFile(t, f, "abcdefgh\n")
			must(t, os.Chown(f, nobody, nobody))
		}, "password-salt is owned by uid 65534"},
		{"serial.log of another user", func(t *testing.T, state string) {
			f := filepath.Join(state, "serial.log")
			writeFile(t, f, "")
			must(t, os.Chown(f, nobody, nobody))
		}, "serial.log is owned by uid 65534"},
		{"state folder of another user", func(t *testing.T, state string) {
			must(t, os.Chown(state, nobody, nobody))
		}, state0 + " is owned by uid 65534"},
		{"state folder is a symlink", func(t *testing.T, state string) {
			elsewhere := t.TempDir()
			must(t, os.Remove(state))
			must(t, os.Symlink(elsewhere, state))
		}, state0 + " is a symlink or not a folder"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := stubEnv(t)
			var marker string
			env["QEMU_BINARY"], marker = markerQEMU(t)
			state := filepath.Join(env["DATA_DIR"], "vms", env["GUEST_NAME"])
			must(t, os.MkdirAll(state, 0o700))
			tt.plant(t, state)
			code, _, log := runTo(t, env)
			want := strings.ReplaceAll(tt.want, state0, state)
			if code != 1 || !strings.Contains(log, want) {
				t.Errorf("exit status %d, want 1 with %q:\n%s", code, want, log)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("QEMU was started")
			}
		})
	}
	t.Run("wide mode narrowed", func(t *testing.T) {
		t.Parallel()
		env := stubEnv(t)
		env["QEMU_BINARY"], _ = markerQEMU(t)
		state := filepath.Join(env["DATA_DIR"], "vms", env["GUEST_NAME"])
		must(t, os.MkdirAll(state, 0o755))
		must(t, os.Chmod(state, 0o777))
		runTo(t, env) // the stand-in QEMU fails; start-up ran
		// Others keep at most search (x): a confined QEMU passes through;
		// the group reads and writes only when it is QEMU's own.
		st, err := os.Stat(state)
		if err != nil {
			t.Fatal(err)
		}
		perm, gid := st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Gid
		if perm&0o006 != 0 || (perm&0o060 != 0 && gid == 0) {
			t.Errorf("state folder mode %v group %d; want no access for others and the group only if it is QEMU's", perm, gid)
		}
	})
}

// state0 stands for the state folder in expected messages.
const state0 = "STATE"

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(content), 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestHygieneSecretsAndFiles boots the test guest with secrets in
// GUEST_PASSWORD, in EXTRA_ARGS (a QEMU secret object) and in a URL, and
// looks where they could leak: --show-config, the supervisor's log, QEMU's
// environment. It also checks the state folder's modes, and that `vmrunner
// health` still answers 0 after a file the configuration names is gone.
func TestHygieneSecretsAndFiles(t *testing.T) {
	needGuest(t)
	t.Parallel()
	env := GuestEnv(t)
	userData := filepath.Join(t.TempDir(), "user-data")
	writeFile(t, userData, "#cloud-config\nhostname: x\n")
	env["GUEST_PASSWORD"] = "pw-Guest-7f3a"
	env["EXTRA_ARGS"] = "-object secret,id=sec0,data=objdata-91c2,format=raw"
	env["CLOUD_INIT_USER_DATA"] = userData
	secrets := []string{"pw-Guest-7f3a", "objdata-91c2"}

	show := copyEnv(env)
	show["BOOT_FROM"] = "https://alice:url-pass-55@127.0.0.1:1/disk.qcow2?token=url-token-66"
	show["CATALOG"] = "https://bob:cat-pass-77@127.0.0.1:1/catalog.yaml?sig=cat-sig-88"
	delete(show, "KERNEL")
	delete(show, "INITRD")
	delete(show, "KERNEL_CMDLINE")
	code, out, log := runTo(t, show, "--show-config")
	if code != 0 {
		t.Fatalf("--show-config: exit %d\n%s", code, log)
	}
	for _, s := range append(secrets, "alice", "url-pass-55", "url-token-66", "bob", "cat-pass-77", "cat-sig-88") {
		if strings.Contains(out+log, s) {
			t.Errorf("--show-config shows %q:\n%s", s, out)
		}
	}
	for _, want := range []string{"https://********@127.0.0.1:1/disk.qcow2?********", "data=********"} {
		if !strings.Contains(out, want) {
			t.Errorf("--show-config lacks %q:\n%s", want, out)
		}
	}

	v := Start(t, env)
	v.WaitReady()
	qemuPID := childPID(t, v.cmd.Process.Pid)
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", qemuPID))
	if err != nil {
		t.Fatal(err)
	}
	vars := strings.Split(strings.TrimRight(string(environ), "\x00"), "\x00")
	for _, kv := range vars {
		if name, _, _ := strings.Cut(kv, "="); name != "PATH" && name != "LANG" && name != "TMPDIR" {
			t.Errorf("QEMU's environment has %s; want PATH, LANG (and TMPDIR) only", name)
		}
	}
	for _, s := range secrets {
		if strings.Contains(string(environ), s) {
			t.Errorf("QEMU's environment holds %q", s)
		}
	}
	if !strings.Contains(v.Stderr(), "data=********") {
		t.Errorf("the log does not show QEMU's arguments with the secret masked:\n%s", v.Stderr())
	}

	// The state folder and its files are this user's alone, but for what
	// a confined QEMU (its own user) must open: those are opened to QEMU's
	// group only.
	state := v.StateDir()
	qemuGID := -1
	if gids := strings.Fields(procStatus(t, qemuPID)["Gid"]); len(gids) > 0 && gids[0] != "0" {
		qemuGID, _ = strconv.Atoi(gids[0])
	}
	checkPrivate(t, state, 0o700, qemuGID)
	checkPrivate(t, filepath.Join(state, "seed.iso"), 0o600, qemuGID)
	for _, f := range []string{"serial.log", "lock", "mac-1", "password-salt"} {
		checkMode(t, filepath.Join(state, f), 0o600)
	}

	// health reads only DATA_DIR and GUEST_NAME: a removed user-data file
	// and kernel do not make the running VM's probe fail.
	must(t, os.Remove(userData))
	must(t, os.Rename(env["KERNEL"], env["KERNEL"]+".moved"))
	defer os.Rename(env["KERNEL"]+".moved", env["KERNEL"])
	if code, _, log := runTo(t, env, "health"); code != 0 {
		t.Errorf("health after the configuration's files went: exit %d\n%s", code, log)
	}
	if code, _, _ := runTo(t, env, "--show-config"); code != 2 {
		t.Errorf("--show-config with the files gone: exit %d, want 2 (it validates them)", code)
	}

	v.Signal(syscall.SIGTERM)
	if code := v.Wait(2 * time.Minute); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	for _, s := range secrets {
		if strings.Contains(v.Stderr(), s) {
			t.Errorf("the log holds %q:\n%s", s, v.Stderr())
		}
	}
}

func copyEnv(env map[string]string) map[string]string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[k] = v
	}
	return out
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if st.Mode().Perm() != want {
		t.Errorf("%s has mode %v, want %v", path, st.Mode().Perm(), want)
	}
}

// checkPrivate: path has mode own (the owner's bits only), or, when QEMU
// runs confined under group qemuGID (-1: as root), the same bits opened to
// that group and no other.
func checkPrivate(t *testing.T, path string, own os.FileMode, qemuGID int) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Error(err)
		return
	}
	perm := st.Mode().Perm()
	if perm == own {
		return
	}
	grouped := own | own>>3
	if gid := int(st.Sys().(*syscall.Stat_t).Gid); qemuGID < 0 || perm != grouped || gid != qemuGID {
		t.Errorf("%s has mode %v group %d, want %v (or %v for QEMU's group %d)", path, perm, gid, own, grouped, qemuGID)
	}
}

// childPID is the one child of pid (QEMU under vmrunner).
func childPID(t *testing.T, pid int) int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		var child int
		if _, err := fmt.Sscan(string(b), &child); err == nil {
			return child
		}
	}
	t.Fatalf("vmrunner %d has no child", pid)
	return 0
}

// TestHygieneGeneratedPassword: with neither GUEST_PASSWORD nor SSH_PUBKEY
// a random password is made, kept in guest-password (0600), told once in
// the log, and kept across restarts; two VMs get different ones.
func TestHygieneGeneratedPassword(t *testing.T) {
	t.Parallel()
	env := stubEnv(t)
	env["QEMU_BINARY"], _ = markerQEMU(t)
	pwLine := regexp.MustCompile(`generated password is ([A-Za-z0-9]{20}) \(kept in (\S+);`)
	_, _, log := runTo(t, env)
	m := pwLine.FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("the log does not tell the generated password:\n%s", log)
	}
	file := filepath.Join(env["DATA_DIR"], "vms", env["GUEST_NAME"], "guest-password")
	if m[2] != file {
		t.Errorf("the log says the password is kept in %s, want %s", m[2], file)
	}
	checkMode(t, file, 0o600)
	if b, err := os.ReadFile(file); err != nil || strings.TrimSpace(string(b)) != m[1] {
		t.Errorf("guest-password holds %q, %v; the log said %q", b, err, m[1])
	}
	_, _, log2 := runTo(t, env)
	if strings.Contains(log2, m[1]) || pwLine.MatchString(log2) {
		t.Errorf("a restart tells the password again:\n%s", log2)
	}
	if b, _ := os.ReadFile(file); strings.TrimSpace(string(b)) != m[1] {
		t.Errorf("a restart changed the password to %q", b)
	}
	other := stubEnv(t)
	other["QEMU_BINARY"] = env["QEMU_BINARY"]
	_, _, log3 := runTo(t, other)
	if m3 := pwLine.FindStringSubmatch(log3); m3 == nil || m3[1] == m[1] {
		t.Errorf("a second VM's password: %v (first %s)", m3, m[1])
	}
}

// TestHygienePersistOffKilledRun: a PERSIST=0 run that is killed cannot
// remove its state folder; the next start recognises it and starts afresh
// instead of reusing what it left (here a file planted beside it).
func TestHygienePersistOffKilledRun(t *testing.T) {
	t.Parallel()
	env := stubEnv(t)
	env["PERSIST"] = "0"
	record := filepath.Join(t.TempDir(), "qemu-saw")
	env["QEMU_BINARY"] = stubQEMU(t, record, true)
	v := Start(t, env)
	waitRecord(t, v, record)
	state := v.StateDir()
	left := filepath.Join(state, "left-by-the-killed-run")
	writeFile(t, left, "x")
	v.Signal(syscall.SIGKILL)
	v.Wait(time.Minute)
	if _, err := os.Stat(filepath.Join(state, "ephemeral")); err != nil {
		t.Fatalf("the killed PERSIST=0 run left no marker: %v", err)
	}

	env["QEMU_BINARY"], _ = markerQEMU(t)
	env["PERSIST"] = "1" // so the folder can be looked at afterwards
	code, _, log := runTo(t, env)
	if code != 1 {
		t.Errorf("exit status %d with a failing QEMU, want 1", code)
	}
	if !strings.Contains(log, "removed what a killed PERSIST=0 run of this VM left") {
		t.Errorf("no word of the wiped state folder:\n%s", log)
	}
	if _, err := os.Stat(left); err == nil {
		t.Error("the killed run's state was reused")
	}
	if _, err := os.Stat(filepath.Join(state, "ephemeral")); err == nil {
		t.Error("a PERSIST=1 run kept the marker")
	}
	if _, err := os.Stat(filepath.Join(state, "mac-1")); err != nil {
		t.Errorf("the new run made no state: %v", err)
	}
}

// TestHygieneTwoRunsOneLink: two vmrunners on one host network with the
// same guest name (two containers with --network host) want the same
// macvtap or tap. The second must leave the first's live link alone with a
// clear error; once the first is killed, its leftover macvtap is replaced.
func TestHygieneTwoRunsOneLink(t *testing.T) {
	needNetns(t)
	t.Parallel()
	for _, mode := range []string{"direct", "bridge"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			host := newNetns(t, "two")
			host.IP("link", "add", "br0", "type", "bridge")
			host.IP("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
			for _, l := range []string{"br0", "eth1", "eth1p"} {
				host.IP("link", "set", l, "up")
			}
			envA := stubEnv(t)
			envA["NETWORK_MODE"] = mode
			envA["NETWORK_DIRECT_DEV"] = "eth1"
			recordA := filepath.Join(t.TempDir(), "qemu-saw")
			envA["QEMU_BINARY"] = stubQEMU(t, recordA, true)
			a := Start(t, envA, host.Wrapper()...)
			waitRecord(t, a, recordA)
			links := host.vmLinks()
			if len(links) != 1 {
				t.Fatalf("first run's links: %+v", links)
			}
			// ip -o link without details: index, flags, MAC, alias; no timers.
			before := host.IP("-o", "link", "show", links[0].Name)
			if !strings.Contains(before, "UP") || !strings.Contains(before, "alias vmrunner testvm NIC 1 run ") {
				t.Errorf("the first run's link is not up with a run's alias: %s", before)
			}

			envB := copyEnv(envA)
			envB["DATA_DIR"] = t.TempDir() // another container's volume
			recordB := filepath.Join(t.TempDir(), "qemu-saw")
			envB["QEMU_BINARY"] = stubQEMU(t, recordB, false)
			b := Start(t, envB, host.Wrapper()...)
			if code := b.Wait(time.Minute); code != 2 {
				t.Errorf("second run: exit %d, want 2\n%s", code, b.Stderr())
			}
			if !strings.Contains(b.Stderr(), "in use by another running vmrunner") {
				t.Errorf("second run's error does not say the link is in use:\n%s", b.Stderr())
			}
			if after := host.IP("-o", "link", "show", links[0].Name); after != before || len(host.vmLinks()) != 1 {
				t.Errorf("the first run's link changed:\nbefore %s\nafter  %s", before, after)
			}
			select {
			case <-a.exited:
				t.Fatalf("the first run ended: %d", a.ExitCode())
			default:
			}
			if _, err := os.Stat(recordB); err == nil {
				t.Error("the second run started QEMU")
			}
			if mode != "direct" {
				return
			}
			// The first run is killed: its macvtap stays, and is stale now.
			a.Signal(syscall.SIGKILL)
			a.Wait(time.Minute)
			b = Start(t, envB, host.Wrapper()...)
			if code := b.Wait(time.Minute); code != 1 {
				t.Errorf("second run after the first was killed: exit %d, want 1 (its stand-in QEMU fails)\n%s", code, b.Stderr())
			}
			if !strings.Contains(b.Stderr(), "replaced macvtap") {
				t.Errorf("the killed run's macvtap was not replaced:\n%s", b.Stderr())
			}
			waitRecord(t, b, recordB)
			host.assertClean()
		})
	}
}
