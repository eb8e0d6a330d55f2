package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// imageServer serves the files of a folder over loopback HTTP, as an image
// mirror would, and counts the GETs of each path.
type imageServer struct {
	URL  string
	dir  string
	mu   sync.Mutex
	gets map[string]int
}

func newImageServer(t *testing.T) *imageServer {
	s := &imageServer{dir: t.TempDir(), gets: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			s.mu.Lock()
			s.gets[r.URL.Path]++
			s.mu.Unlock()
		}
		http.ServeFile(w, r, filepath.Join(s.dir, filepath.Base(r.URL.Path)))
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Gets is how often name was asked for.
func (s *imageServer) Gets(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets["/"+name]
}

// markedRaw writes a 16 MiB raw disk whose first line is the test guest's
// disk mark (VMTEST disk … mark=MARK).
func markedRaw(t *testing.T, path, mark string) []byte {
	t.Helper()
	raw := make([]byte, 16<<20)
	copy(raw, "vmtest-mark:"+mark+"\n")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return raw
}

// addQcow2 serves name: a qcow2 made with qemu-img from a marked raw disk.
// It returns the file's sha256.
func (s *imageServer) addQcow2(t *testing.T, name, mark string) string {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "disk.raw")
	markedRaw(t, raw, mark)
	dst := filepath.Join(s.dir, name)
	if out, err := exec.Command("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, dst).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	return fileSHA256(t, dst)
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// guestDisk is one "VMTEST disk" line of the test guest.
type guestDisk struct {
	Name string
	Size int64
}

var diskLine = regexp.MustCompile(`(?m)^VMTEST disk name=(\S+) size=(\d+) mark=(.*?)\r?$`)

// guestDisks maps each disk's mark to the disk, from the console.
func guestDisks(t *testing.T, v *VM) map[string]guestDisk {
	t.Helper()
	disks := map[string]guestDisk{}
	for _, m := range diskLine.FindAllStringSubmatch(v.Console(), -1) {
		d := guestDisk{Name: m[1]}
		fmt.Sscan(m[2], &d.Size)
		disks[m[3]] = d
	}
	return disks
}

// wantDisks checks the guest's disks by mark: their size and the kind of
// device name their bus gives (vd for virtio, sd for SCSI).
func wantDisks(t *testing.T, v *VM, prefix string, want map[string]int64) {
	t.Helper()
	got := guestDisks(t, v)
	if len(got) != len(want) {
		t.Errorf("the guest sees disks %+v, want marks and sizes %v", got, want)
	}
	for mark, size := range want {
		d, ok := got[mark]
		if !ok || d.Size != size || !strings.HasPrefix(d.Name, prefix) {
			t.Errorf("disk marked %q: %+v (present %v), want %d bytes on a %s* device", mark, d, ok, size, prefix)
		}
	}
}

func powerOff(t *testing.T, v *VM) {
	t.Helper()
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(2 * time.Minute); code != 0 {
		t.Fatalf("exit status after SIGTERM = %d, want 0", code)
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestImageBootGrowAndPersist boots the test guest twice on a disk image
// served by a loopback mirror. The first start downloads it by URL; the
// second names it by DISTRO from a CATALOG file (the same URL) and finds it
// cached. Between them DISK_SIZE grows, DISK2_SIZE asks for a shrink that
// is refused, the bus changes to SCSI, and data the guest wrote on its
// extra disk is still there. The second start has PERSIST off: its state
// folder goes when it ends; the cache stays.
func TestImageBootGrowAndPersist(t *testing.T) {
	needGuest(t)
	t.Parallel()
	srv := newImageServer(t)
	sum := srv.addQcow2(t, "disk.qcow2", "base-image")
	device := filepath.Join(t.TempDir(), "device.raw")
	markedRaw(t, device, "host-device")

	env := GuestEnv(t)
	cmdline := env["KERNEL_CMDLINE"]
	maps.Copy(env, map[string]string{
		"BOOT_FROM": srv.URL + "/disk.qcow2", "BOOT_FROM_SHA256": sum,
		"DISK_SIZE": "64M", "DISK2_SIZE": "32M", "DEVICE": device,
		// vdb is DISK2: virtio disks follow the command line's order.
		"KERNEL_CMDLINE": cmdline + " vmtest.mark=vdb:written-by-the-guest",
	})
	v := Start(t, env)
	v.WaitReady()
	wantDisks(t, v, "vd", map[string]int64{"base-image": 64 << 20, "written-by-the-guest": 32 << 20, "host-device": 16 << 20})
	powerOff(t, v)
	if n := srv.Gets("disk.qcow2"); n != 1 {
		t.Errorf("first start: %d GETs of the image, want 1", n)
	}
	for _, f := range []string{"disk.qcow2", "disk2.qcow2"} {
		if !exists(filepath.Join(v.StateDir(), f)) {
			t.Errorf("PERSIST=1 did not keep %s", f)
		}
	}

	catalog := filepath.Join(t.TempDir(), "catalog.yaml")
	entry := fmt.Sprintf("distros:\n  loopback-test:\n    description: the test guest's disk on a loopback mirror\n    url: %s/disk.qcow2\n    sha256: %s\n", srv.URL, sum)
	if err := os.WriteFile(catalog, []byte(entry), 0o644); err != nil {
		t.Fatal(err)
	}
	env2 := maps.Clone(env)
	delete(env2, "BOOT_FROM")
	delete(env2, "BOOT_FROM_SHA256")
	maps.Copy(env2, map[string]string{
		"CATALOG": catalog, "DISTRO": "loopback-test",
		"DISK_SIZE": "128M", "DISK2_SIZE": "16M", "DISK_TYPE": "scsi", "PERSIST": "0",
		"KERNEL_CMDLINE": cmdline,
	})
	v2 := Start(t, env2)
	v2.WaitReady()
	wantDisks(t, v2, "sd", map[string]int64{"base-image": 128 << 20, "written-by-the-guest": 32 << 20, "host-device": 16 << 20})
	powerOff(t, v2)
	if n := srv.Gets("disk.qcow2"); n != 1 {
		t.Errorf("after the second start: %d GETs of the image, want still 1", n)
	}
	logs := v2.Stderr()
	for _, want := range []string{"using cached image", "DISK2_SIZE is smaller than the disk (16M < 32M)", "the state folder is removed when the VM ends"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the second start's log lacks %q", want)
		}
	}
	if exists(v2.StateDir()) {
		t.Errorf("PERSIST=0 kept the state folder %s", v2.StateDir())
	}
	cached, _ := filepath.Glob(filepath.Join(v2.DataDir, "cache", "disk."+sum[:12]+".qcow2"))
	if len(cached) != 1 || !exists(device) {
		t.Errorf("after PERSIST=0: cached image %q, device kept %v; want both", cached, exists(device))
	}
}

// standInEnv runs vmrunner with a stand-in QEMU that records its arguments
// and exits 0 (a guest that powered off at once), so that start-up is
// tested without a boot.
func standInEnv(t *testing.T) (map[string]string, string) {
	dir := t.TempDir()
	record := filepath.Join(dir, "qemu-args")
	script := filepath.Join(dir, "qemu")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s\\n' \"$*\" >>"+record+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"QEMU_BINARY": script, "KERNEL": kernel, "ACCEL": "tcg", "BOOT_MODE": "legacy", "MEMORY": "256",
		"DATA_DIR": filepath.Join(dir, "data"), "GUEST_NAME": "imgvm", "LOG_FORMAT": "json",
		"NETWORK_MODE": "none", "CLOUD_INIT": "0", "DISK_SIZE": "64M",
	}, record
}

func runOnce(t *testing.T, env map[string]string) *VM {
	t.Helper()
	v := Start(t, env)
	v.Wait(time.Minute)
	return v
}

// TestImageChecksumMismatch: a download whose sha256 is not the pinned one
// ends the start with both digests named, and leaves no image, no partial
// download and no state folder (only the cache entry's lock file).
func TestImageChecksumMismatch(t *testing.T) {
	need(t, "qemu-img on PATH", haveTool("qemu-img"))
	t.Parallel()
	srv := newImageServer(t)
	got := srv.addQcow2(t, "disk.qcow2", "base-image")
	pinned := strings.Repeat("5a", 32)
	env, record := standInEnv(t)
	env["BOOT_FROM"], env["BOOT_FROM_SHA256"] = srv.URL+"/disk.qcow2", pinned
	v := runOnce(t, env)
	if code := v.ExitCode(); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	for _, want := range []string{"sha256 mismatch", pinned, got} {
		if !strings.Contains(v.Stderr(), want) {
			t.Errorf("the log lacks %q:\n%s", want, v.Stderr())
		}
	}
	left, _ := filepath.Glob(filepath.Join(env["DATA_DIR"], "cache", "*"))
	for _, f := range left {
		if !strings.HasSuffix(f, ".lock") {
			t.Errorf("left in the cache: %s", f)
		}
	}
	if exists(filepath.Join(env["DATA_DIR"], "vms")) || exists(record) {
		t.Errorf("a state folder was made (%v) or QEMU ran (%v)", exists(filepath.Join(env["DATA_DIR"], "vms")), exists(record))
	}
}

// TestImageXZCachedAndUEFIVars: an .xz image made by the xz program is
// unpacked into the cache and backs the VM's disk; the next start uses the
// cache (no GET); the UEFI variables are copied once, kept while PERSIST
// is on and removed with the state folder when it is off.
func TestImageXZCachedAndUEFIVars(t *testing.T) {
	need(t, "qemu-img on PATH", haveTool("qemu-img"))
	need(t, "xz on PATH", haveTool("xz"))
	need(t, "OVMF", exists("/usr/share/OVMF/OVMF_CODE_4M.fd"))
	t.Parallel()
	srv := newImageServer(t)
	raw := markedRaw(t, filepath.Join(srv.dir, "disk.raw"), "xz-image")
	if out, err := exec.Command("xz", "-0", "-T1", filepath.Join(srv.dir, "disk.raw")).CombinedOutput(); err != nil {
		t.Fatalf("xz: %v\n%s", err, out)
	}
	env, record := standInEnv(t)
	env["BOOT_FROM"], env["BOOT_MODE"], env["PERSIST"] = srv.URL+"/disk.raw.xz", "uefi", "1"
	env["BOOT_FROM_SHA256"] = fileSHA256(t, filepath.Join(srv.dir, "disk.raw.xz")) // plain http needs a digest
	state := filepath.Join(env["DATA_DIR"], "vms", env["GUEST_NAME"])
	vars := filepath.Join(state, "efivars.fd")

	v := runOnce(t, env)
	if v.ExitCode() != 0 {
		t.Fatalf("first start: exit %d\n%s", v.ExitCode(), v.Stderr())
	}
	unpacked, _ := filepath.Glob(filepath.Join(env["DATA_DIR"], "cache", "disk.*.raw"))
	if len(unpacked) != 1 {
		t.Fatalf("unpacked images in the cache: %q, want one disk.<digest>.raw", unpacked)
	}
	if b, err := os.ReadFile(unpacked[0]); err != nil || string(b) != string(raw) {
		t.Errorf("the cached image is not the unpacked disk (%d bytes, %v)", len(b), err)
	}
	if backing := backingFile(t, filepath.Join(state, "disk.qcow2")); backing != unpacked[0] {
		t.Errorf("disk.qcow2 is backed by %q, want %q", backing, unpacked[0])
	}
	args, _ := os.ReadFile(record)
	if !strings.Contains(string(args), "file="+filepath.Join(state, "disk.qcow2")+",if=none,id=disk0,format=qcow2") {
		t.Errorf("QEMU did not get the disk:\n%s", args)
	}
	if err := os.WriteFile(vars, []byte("variables the guest set"), 0o644); err != nil {
		t.Fatal(err)
	}

	v = runOnce(t, env)
	if v.ExitCode() != 0 || !strings.Contains(v.Stderr(), "using cached image") || srv.Gets("disk.raw.xz") != 1 {
		t.Errorf("second start: exit %d, %d GETs (want 1), log:\n%s", v.ExitCode(), srv.Gets("disk.raw.xz"), v.Stderr())
	}
	if b, _ := os.ReadFile(vars); string(b) != "variables the guest set" {
		t.Errorf("efivars.fd after a restart = %.40q, want the guest's variables kept", b)
	}

	env["PERSIST"] = "0"
	v = runOnce(t, env)
	if v.ExitCode() != 0 || exists(state) || !exists(unpacked[0]) {
		t.Errorf("PERSIST=0: exit %d, state folder kept %v, cached image kept %v; want 0, false, true",
			v.ExitCode(), exists(state), exists(unpacked[0]))
	}
}

func haveTool(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

func backingFile(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--output=json", "-U", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var info struct {
		Backing string `json:"full-backing-filename"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	return info.Backing
}
