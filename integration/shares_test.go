package integration

import (
	"bytes"
	endian "encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// shareRun is what the busybox guest's share script reported: for each
// check its exit status and output (lines joined with |).
type shareRun map[string]struct {
	rc  int
	out string
}

// runShareScript boots the busybox guest with env, lets init mount the
// shares (vmtest.share) and run script from the read-only share mounted
// at /mnt/<scriptTag>, and collects its "VMTEST r NAME rc=N out=…" lines.
func runShareScript(t *testing.T, env map[string]string, mounts, scriptTag string) (*VM, shareRun) {
	t.Helper()
	env["KERNEL_CMDLINE"] += " vmtest.share=" + mounts + " vmtest.run=/mnt/" + scriptTag + "/run.sh"
	v := Start(t, env)
	v.WaitReady()
	v.WaitLine(`^VMTEST run exit=`, 15*time.Minute)
	got := shareRun{}
	rx := regexp.MustCompile(`^VMTEST r (\S+) rc=(\d+) out=(.*)$`)
	for _, line := range strings.Split(v.Console(), "\n") {
		if m := rx.FindStringSubmatch(strings.TrimRight(line, "\r")); m != nil {
			var rc int
			fmt.Sscan(m[2], &rc)
			got[m[1]] = struct {
				rc  int
				out string
			}{rc, m[3]}
		}
	}
	return v, got
}

// shareScript is sh run by the guest: r NAME 'COMMANDS' prints one line.
const shareScriptHead = `r() {
	o=$(sh -c "$2" 2>&1)
	c=$?
	echo "VMTEST r $1 rc=$c out=$(echo "$o" | tr '\n' '|' | sed 's/|$//')"
}
`

// escapeChecks try to leave share tag through host symlinks (absolute,
// ../) and guest ones; the guest must see its own files, never the host's.
func escapeChecks(tag, secret string) string {
	m := "/mnt/" + tag
	return fmt.Sprintf("r %s_escape 'cat %s/abs/key %s/up/key %s/../secret/key; cat %s/etc/hostname; ln -s / %s/rootlink && cat %s/rootlink%s/key'\n",
		tag, m, m, m, m, m, m, secret)
}

// confinedUser is QEMU's user when vmrunner (root) confines it: the
// dedicated user if this host has it, else nobody.
func confinedUser(t *testing.T) (uid, gid int) {
	if out, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Split(l, ":")
			if len(f) > 3 && f[0] == "vmrunner-qemu" {
				fmt.Sscan(f[2], &uid)
				fmt.Sscan(f[3], &gid)
				return uid, gid
			}
		}
	}
	return 65534, 65534
}

// qemuUserLogged is the user vmrunner's "starting QEMU" line names.
func qemuUserLogged(t *testing.T, v *VM) string {
	for _, line := range strings.Split(v.Stderr(), "\n") {
		var rec struct {
			Msg  string `json:"msg"`
			User string `json:"user"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "starting QEMU" {
			return rec.User
		}
	}
	t.Fatal("no \"starting QEMU\" log line")
	return ""
}

// xattrUint reads one of 9p mapped-xattr's user.virtfs.* attributes
// (a little-endian 32-bit number).
func xattrUint(t *testing.T, path, name string) (uint32, bool) {
	buf := make([]byte, 16)
	n, err := unix.Lgetxattr(path, "user.virtfs."+name, buf)
	if err != nil || n != 4 {
		return 0, false
	}
	return endian.LittleEndian.Uint32(buf[:4]), true
}

// shareFolders makes a folder per name under base, each with hello.txt and
// the escape symlinks (abs → secret, up → ../secret, etc → /etc), and
// the secret folder beside them. It returns secret's path.
func shareFolders(t *testing.T, base string, names ...string) string {
	t.Helper()
	secret := filepath.Join(base, "secret")
	mustMkdir(t, secret, 0o700)
	mustWrite(t, filepath.Join(secret, "key"), "host-secret-5f2c\n")
	for _, n := range names {
		d := filepath.Join(base, n)
		mustMkdir(t, d, 0o755)
		mustWrite(t, filepath.Join(d, "hello.txt"), "from the host "+n+"\n")
		for name, target := range map[string]string{"abs": secret, "up": "../secret", "etc": "/etc"} {
			if err := os.Symlink(target, filepath.Join(d, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return secret
}

func mustMkdir(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyFile copies src to dst (mode 0644) and returns dst.
func copyFile(t *testing.T, src, dst string) string {
	t.Helper()
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s: %v %s", src, err, out)
	}
	if err := os.Chmod(dst, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// guestCopy puts the busybox guest's kernel and initrd into dir, which
// QEMU's unprivileged user can reach (a checkout under /root may not be).
func guestCopy(t *testing.T, env map[string]string, dir string) {
	t.Helper()
	for _, k := range []string{"KERNEL", "INITRD"} {
		b, err := os.ReadFile(env[k])
		if err != nil {
			t.Fatal(err)
		}
		env[k] = filepath.Join(dir, filepath.Base(env[k]))
		if err := os.WriteFile(env[k], b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkEscape fails when the guest saw the host's secret or hostname
// through share tag. (A host symlink resolves in the guest: to the guest's
// own /etc, or, with 9p mapped, not at all.)
func checkEscape(t *testing.T, got shareRun, tag string) {
	t.Helper()
	r, ok := got[tag+"_escape"]
	host, _ := os.Hostname()
	if !ok || strings.Contains(r.out, "host-secret") || strings.Contains("|"+r.out+"|", "|"+host+"|") {
		t.Errorf("%s: a symlink or .. out of the share reached the host: %+v", tag, r)
	}
}

// TestSharesBusybox boots the busybox guest (a generic Debian kernel with
// 9p and virtiofs modules) with QEMU confined to its unprivileged user and
// five shares, and checks each from both sides:
//
//	share1 9p mapped     guest's owner and mode kept in xattrs, host file QEMU's user's, 0600
//	share2 9p squash     host file QEMU's user's, guest's mode kept, its chown refused
//	share3 9p read-only  writes refused, also after a remount rw in the guest
//	share4 virtiofs      guest's owner and mode land on the host as they are
//	share5 virtiofs read-only: as share3
//
// It also times a sequential read of the same 256 MiB over virtiofs, over
// 9p and from the guest's own disk, page cache dropped before each.
func TestSharesBusybox(t *testing.T) {
	needGuest(t)
	needRoot(t)
	_, err := os.Stat("/usr/lib/qemu/virtiofsd")
	need(t, "virtiofsd (qemu-system-common)", err == nil)
	t.Parallel()
	env := GuestEnv(t)
	base := env["DATA_DIR"] // reachable by QEMU's user (0711 up to /)
	guestCopy(t, env, base)
	env["DATA_DIR"] = filepath.Join(base, "data")
	secret := shareFolders(t, base, "mapped", "squash", "ro", "vfs", "vfsro")
	uid, gid := confinedUser(t)
	// 9p runs inside QEMU: its read-write folders must be QEMU's user's.
	for _, d := range []string{"mapped", "squash"} {
		if err := os.Chown(filepath.Join(base, d), uid, gid); err != nil {
			t.Fatal(err)
		}
	}

	// 256 MiB read over 9p (share3) and virtiofs (share4): the same inode.
	big := filepath.Join(base, "ro", "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("vmrunner shared folder test dat\n"), 1<<15) // 1 MiB
	for range 256 {
		f.Write(chunk)
	}
	f.Close()
	if err := os.Link(big, filepath.Join(base, "vfs", "big")); err != nil {
		t.Fatal(err)
	}
	// The same bytes as the guest's disk: a raw image QEMU's user may
	// open read-write (DEVICE), a copy so no page cache is shared.
	disk := copyFile(t, big, filepath.Join(base, "disk.raw"))
	if err := os.Chown(disk, uid, gid); err != nil {
		t.Fatal(err)
	}

	script := shareScriptHead +
		"r share1_read 'cat /mnt/share1/hello.txt'\n" +
		"r share1_write 'echo guest > /mnt/share1/g.txt && chown 1234:5678 /mnt/share1/g.txt && chmod 640 /mnt/share1/g.txt && stat -c \"%u:%g %a\" /mnt/share1/g.txt'\n" +
		"r share2_read 'cat /mnt/share2/hello.txt'\n" +
		"r share2_write 'echo guest > /mnt/share2/g.txt && chmod 640 /mnt/share2/g.txt && chown 1234:5678 /mnt/share2/g.txt; stat -c \"%u:%g %a\" /mnt/share2/g.txt'\n" +
		"r share4_read 'cat /mnt/share4/hello.txt'\n" +
		"r share4_write 'echo guest > /mnt/share4/g.txt && chown 1234:5678 /mnt/share4/g.txt && chmod 640 /mnt/share4/g.txt && stat -c \"%u:%g %a\" /mnt/share4/g.txt'\n"
	for _, tag := range []string{"share3", "share5"} {
		m := "/mnt/" + tag
		script += "r " + tag + "_read 'cat " + m + "/hello.txt'\n" +
			"r " + tag + "_write 'echo guest > " + m + "/g.txt'\n" +
			"r " + tag + "_rm 'rm -f " + m + "/hello.txt'\n" +
			"r " + tag + "_remount 'mount -o remount,rw " + m + " && grep \" " + m + " \" /proc/mounts'\n" +
			"r " + tag + "_write2 'echo guest > " + m + "/g.txt'\n" +
			"r " + tag + "_chmod 'chmod 600 " + m + "/hello.txt'\n"
	}
	for _, tag := range []string{"share1", "share2", "share4"} {
		script += escapeChecks(tag, secret)
	}
	// The same bytes over virtiofs, 9p and the guest's disk (a qcow2 in the
	// state folder), the guest's page cache dropped before each read.
	script += "r read_virtiofs 'sh /mnt/share3/rate /mnt/share4/big'\n" +
		"r read_9p 'sh /mnt/share3/rate /mnt/share3/big'\n" +
		"r read_disk 'sh /mnt/share3/rate /dev/vda'\n"
	// busybox dd prints no rate: time it in centiseconds of uptime.
	mustWrite(t, filepath.Join(base, "ro", "rate"), `sync; echo 3 > /proc/sys/vm/drop_caches
t0=$(cut -d' ' -f1 /proc/uptime | tr -d .)
n=$(dd if="$1" bs=1M count=256 2>/dev/null | wc -c)
t1=$(cut -d' ' -f1 /proc/uptime | tr -d .)
echo "bytes=$n csec=$((t1 - t0))"
`)
	mustWrite(t, filepath.Join(base, "ro", "run.sh"), script)

	for k, val := range map[string]string{
		"MEMORY":            "1024",
		"LOG_VERBOSE":       "1", // counts the guest agent rounds (this guest has no agent)
		"DEVICE":            disk,
		"FILESYSTEM_SOURCE": filepath.Join(base, "mapped"), "FILESYSTEM_DRIVER": "9p", "FILESYSTEM_ACCESSMODE": "mapped",
		"FILESYSTEM2_SOURCE": filepath.Join(base, "squash"), "FILESYSTEM2_DRIVER": "9p", "FILESYSTEM2_ACCESSMODE": "squash",
		"FILESYSTEM3_SOURCE": filepath.Join(base, "ro"), "FILESYSTEM3_DRIVER": "9p", "FILESYSTEM3_ACCESSMODE": "mapped", "FILESYSTEM3_READONLY": "1",
		"FILESYSTEM4_SOURCE": filepath.Join(base, "vfs"), "FILESYSTEM4_DRIVER": "virtiofs",
		"FILESYSTEM5_SOURCE": filepath.Join(base, "vfsro"), "FILESYSTEM5_DRIVER": "virtiofs", "FILESYSTEM5_READONLY": "1",
		"SHUTDOWN_TIMEOUT": "60",
	} {
		env[k] = val
	}
	v, got := runShareScript(t, env, "share1:9p,share2:9p,share3:9p:ro,share4:virtiofs,share5:virtiofs:ro", "share3")
	t.Logf("guest results: %+v", got)
	if user := qemuUserLogged(t, v); !strings.Contains(user, fmt.Sprintf("uid %d", uid)) {
		t.Errorf("QEMU runs as %q, want its unprivileged user (uid %d)", user, uid)
	}
	for _, w := range []string{"share1:9p", "share2:9p", "share3:9p", "share4:virtiofs", "share5:virtiofs"} {
		tag, typ, _ := strings.Cut(w, ":")
		if !strings.Contains(v.Console(), "VMTEST share tag="+tag+" type="+typ+" mounted=yes") {
			t.Errorf("%s was not mounted in the guest", w)
		}
	}
	for tag, dir := range map[string]string{"share1": "mapped", "share2": "squash", "share3": "ro", "share4": "vfs", "share5": "vfsro"} {
		if r := got[tag+"_read"]; r.rc != 0 || r.out != "from the host "+dir {
			t.Errorf("%s: host file in the guest: %+v", tag, r)
		}
	}

	// mapped: the guest sees what it set; the host file is QEMU's user's,
	// 0600, the guest's owner and mode in xattrs.
	if r := got["share1_write"]; r.rc != 0 || r.out != "1234:5678 640" {
		t.Errorf("9p mapped: guest write/chown/chmod: %+v", r)
	}
	p := filepath.Join(base, "mapped", "g.txt")
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil || st.Uid != uint32(uid) || st.Mode&0o7777 != 0o600 {
		t.Errorf("9p mapped: host file %s: %v, uid %d mode %#o; want QEMU's user %d and 0600", p, err, st.Uid, st.Mode&0o7777, uid)
	}
	xu, ok1 := xattrUint(t, p, "uid")
	xg, ok2 := xattrUint(t, p, "gid")
	xm, ok3 := xattrUint(t, p, "mode")
	if !ok1 || !ok2 || !ok3 || xu != 1234 || xg != 5678 || xm&0o7777 != 0o640 {
		t.Errorf("9p mapped: xattrs uid %d gid %d mode %#o (%v %v %v); want 1234 5678 0640", xu, xg, xm&0o7777, ok1, ok2, ok3)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "guest\n" {
		t.Errorf("9p mapped: host reads %q, %v", b, err)
	}

	// squash: the guest's chown is refused (EPERM), its chmod kept.
	p = filepath.Join(base, "squash", "g.txt")
	if err := unix.Lstat(p, &st); err != nil || st.Uid != uint32(uid) || st.Mode&0o7777 != 0o640 {
		t.Errorf("9p squash: host file %s: %v, uid %d mode %#o; want QEMU's user %d and 0640", p, err, st.Uid, st.Mode&0o7777, uid)
	}
	if r := got["share2_write"]; r.rc != 0 || !strings.HasSuffix(r.out, fmt.Sprintf("|%d:%d 640", uid, gid)) || !strings.Contains(r.out, "Operation not permitted") {
		t.Errorf("9p squash: guest sees %+v; want chown refused, the host owner %d:%d and 640", r, uid, gid)
	}

	// virtiofs: virtiofsd runs as root; the guest's owner and mode are the host's.
	p = filepath.Join(base, "vfs", "g.txt")
	if err := unix.Lstat(p, &st); err != nil || st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o640 {
		t.Errorf("virtiofs: host file %s: %v, %d:%d mode %#o; want 1234:5678 0640", p, err, st.Uid, st.Gid, st.Mode&0o7777)
	}
	if r := got["share4_write"]; r.rc != 0 || r.out != "1234:5678 640" {
		t.Errorf("virtiofs: guest write: %+v", r)
	}

	// Read-only, both drivers: every write fails in the guest, also after
	// the guest remounted the share read-write; the host folder is unchanged.
	for tag, dir := range map[string]string{"share3": "ro", "share5": "vfsro"} {
		for _, c := range []string{"_write", "_rm", "_write2", "_chmod"} {
			if r := got[tag+c]; r.rc == 0 {
				t.Errorf("%s (read-only): %s succeeded: %+v", tag, c[1:], r)
			}
		}
		t.Logf("%s remount rw in the guest: %+v; write after it: %+v", tag, got[tag+"_remount"], got[tag+"_write2"])
		if _, err := os.Stat(filepath.Join(base, dir, "g.txt")); err == nil {
			t.Errorf("%s (read-only): the guest's file reached the host", tag)
		}
		if fi, err := os.Stat(filepath.Join(base, dir, "hello.txt")); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s (read-only): hello.txt changed: %v %v", tag, fi, err)
		}
	}

	for _, tag := range []string{"share1", "share2", "share4"} {
		checkEscape(t, got, tag)
	}

	rates := map[string]string{}
	for _, k := range []string{"virtiofs", "9p", "disk"} {
		r := got["read_"+k]
		var n, csec int
		if _, err := fmt.Sscanf(r.out, "bytes=%d csec=%d", &n, &csec); err != nil || r.rc != 0 || n != 256<<20 || csec <= 0 {
			t.Errorf("read over %s: %+v", k, r)
			continue
		}
		rates[k] = fmt.Sprintf("%.1f MiB/s (%.1f s)", float64(n)/(1<<20)/(float64(csec)/100), float64(csec)/100)
	}
	t.Logf("sequential read of 256 MiB under TCG, guest page cache dropped: virtiofs %s | 9p %s | guest disk (virtio-blk, raw, cache=none) %s",
		rates["virtiofs"], rates["9p"], rates["disk"])

	logAgentRounds(t, v)
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(2 * time.Minute); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
}

// logAgentRounds logs how often the controller asked a guest without an
// agent (LOG_VERBOSE=1's "guest agent asked" lines), for the measurement.
func logAgentRounds(t *testing.T, v *VM) {
	var first, last time.Time
	var started time.Time
	rounds := 0
	for _, line := range strings.Split(v.Stderr(), "\n") {
		var rec struct {
			Msg string    `json:"msg"`
			TS  time.Time `json:"ts"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch rec.Msg {
		case "QEMU started":
			started = rec.TS
		case "guest agent asked":
			if rounds == 0 {
				first = rec.TS
			}
			last, rounds = rec.TS, rounds+1
		}
	}
	if rounds > 0 {
		t.Logf("guest agent rounds without an agent: %d in %s after QEMU started (first at %s, last at %s)",
			rounds, time.Since(started).Round(time.Second), first.Sub(started).Round(time.Second), last.Sub(started).Round(time.Second))
	}
}

// TestShares9pPassthrough: 9p passthrough stores the guest's owners as
// the host's, which needs QEMU to be root: vmrunner keeps QEMU as root for
// it (with a warning), and the guest's chown lands on the host.
func TestShares9pPassthrough(t *testing.T) {
	needGuest(t)
	needRoot(t)
	t.Parallel()
	env := GuestEnv(t)
	base := env["DATA_DIR"]
	guestCopy(t, env, base)
	env["DATA_DIR"] = filepath.Join(base, "data")
	secret := shareFolders(t, base, "pt", "script")
	script := shareScriptHead +
		"r share1_read 'cat /mnt/share1/hello.txt'\n" +
		"r share1_write 'echo guest > /mnt/share1/g.txt && chown 1234:5678 /mnt/share1/g.txt && chmod 640 /mnt/share1/g.txt && stat -c \"%u:%g %a\" /mnt/share1/g.txt'\n" +
		"r share1_mkdir 'mkdir /mnt/share1/d && stat -c \"%u:%g %a\" /mnt/share1/d'\n" +
		escapeChecks("share1", secret)
	mustWrite(t, filepath.Join(base, "script", "run.sh"), script)
	for k, val := range map[string]string{
		"FILESYSTEM_SOURCE": filepath.Join(base, "pt"), "FILESYSTEM_DRIVER": "9p", "FILESYSTEM_ACCESSMODE": "passthrough",
		"FILESYSTEM2_SOURCE": filepath.Join(base, "script"), "FILESYSTEM2_DRIVER": "9p", "FILESYSTEM2_ACCESSMODE": "squash", "FILESYSTEM2_READONLY": "1",
		"SHUTDOWN_TIMEOUT": "60",
	} {
		env[k] = val
	}
	v, got := runShareScript(t, env, "share1:9p,share2:9p:ro", "share2")
	t.Logf("guest results: %+v", got)
	if user := qemuUserLogged(t, v); user != "vmrunner's own user" || !strings.Contains(v.Stderr(), "QEMU runs as root: the shared folder "+filepath.Join(base, "pt")) {
		t.Errorf("QEMU runs as %q; want root, with the warning naming the passthrough folder", user)
	}
	if r := got["share1_read"]; r.rc != 0 || r.out != "from the host pt" {
		t.Errorf("host file in the guest: %+v", r)
	}
	if r := got["share1_write"]; r.rc != 0 || r.out != "1234:5678 640" {
		t.Errorf("guest write/chown/chmod: %+v", r)
	}
	var st unix.Stat_t
	p := filepath.Join(base, "pt", "g.txt")
	if err := unix.Lstat(p, &st); err != nil || st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o640 {
		t.Errorf("host file %s: %v, %d:%d mode %#o; want 1234:5678 0640", p, err, st.Uid, st.Gid, st.Mode&0o7777)
	}
	checkEscape(t, got, "share1")
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(2 * time.Minute); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
}
