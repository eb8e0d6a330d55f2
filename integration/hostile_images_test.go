package integration

import (
	bin "encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchOpens reports every open or read of a file in dir from now on
// (inotify): a marker that nothing may touch, where atime would not do
// (relatime mounts update it once a day at most).
func watchOpens(t *testing.T, dir string) func() []string {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_OPEN|unix.IN_ACCESS); err != nil {
		t.Fatal(err)
	}
	return func() []string {
		var seen []string
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if n <= 0 || err != nil {
				return seen
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				seen = append(seen, fmt.Sprintf("%s (mask %#x)", filepath.Join(dir, name), ev.Mask))
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
}

// listener is a loopback TCP port that counts the connections it gets.
func listener(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return l.Addr().String(), &n
}

func qemuImgCreate(t *testing.T, path string, args ...string) string {
	t.Helper()
	all := append(append([]string{"create", "-q"}, args...), path, "16M")
	if out, err := exec.Command("qemu-img", all...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %q: %v\n%s", all, err, out)
	}
	return path
}

// kdmv is a vmdk sparse header with an embedded descriptor. Of capacity
// 0, QEMU opens the descriptor's extents instead of the file; of any
// capacity, it takes a parentFileNameHint in the text as a backing file.
func kdmv(t *testing.T, path string, capacity uint64, desc string) string {
	t.Helper()
	b := make([]byte, 4096)
	copy(b, "KDMV")
	bin.LittleEndian.PutUint32(b[4:], 1)
	bin.LittleEndian.PutUint64(b[12:], capacity)
	bin.LittleEndian.PutUint64(b[28:], 1) // descriptor at sector 1
	bin.LittleEndian.PutUint64(b[36:], 2) // of two sectors
	copy(b[512:], desc)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestHostileImagesRefused tries each way an image can make vmrunner or
// QEMU open something else: every one is refused with exit 2 naming the
// variable, the image and the reference, before any state is made,
// qemu-img converts or QEMU starts; no marker file is opened and no
// loopback listener sees a connection.
func TestHostileImagesRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the built vmrunner")
	}
	need(t, "qemu-img on PATH", haveTool("qemu-img"))
	secrets := t.TempDir() // stands for /etc: the watched folder
	shadow := filepath.Join(secrets, "shadow")
	if err := os.WriteFile(shadow, []byte("root:secret-hash:19000:0:99999:7:::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dataRaw := qemuImgCreate(t, filepath.Join(secrets, "data.raw"), "-f", "raw")
	nbdAddr, nbdConns := listener(t)
	httpAddr, httpConns := listener(t)
	imgs := t.TempDir()
	srv := newImageServer(t)
	served := qemuImgCreate(t, filepath.Join(srv.dir, "served.qcow2"), "-f", "qcow2", "-u", "-F", "raw", "-b", shadow)
	descriptor := filepath.Join(imgs, "desc.vmdk")
	if err := os.WriteFile(descriptor, []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"+
		"createType=\"monolithicFlat\"\nRW 32768 FLAT \""+shadow+"\" 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		bootFrom  func(env map[string]string) string // sets up the image in env's DATA_DIR if it must
		sha256    bool                               // a download: pin its digest
		reference string                             // what the error must name
	}{
		{"backing file", func(map[string]string) string {
			return qemuImgCreate(t, filepath.Join(imgs, "shadow.qcow2"), "-f", "qcow2", "-u", "-F", "raw", "-b", shadow)
		}, false, `backing file "` + shadow},
		{"another VM's disk", func(env map[string]string) string {
			other := filepath.Join(env["DATA_DIR"], "vms", "othervm")
			os.MkdirAll(other, 0o755)
			qemuImgCreate(t, filepath.Join(other, "disk.qcow2"), "-f", "qcow2")
			return qemuImgCreate(t, filepath.Join(imgs, "neighbour.qcow2"), "-f", "qcow2", "-u", "-F", "qcow2",
				"-b", filepath.Join(other, "disk.qcow2"))
		}, false, "othervm/disk.qcow2"},
		{"nbd backing", func(map[string]string) string {
			return qemuImgCreate(t, filepath.Join(imgs, "nbd.qcow2"), "-f", "qcow2", "-u", "-F", "raw", "-b", "nbd://"+nbdAddr+"/x")
		}, false, "nbd://" + nbdAddr},
		{"http backing", func(map[string]string) string {
			return qemuImgCreate(t, filepath.Join(imgs, "http.qcow2"), "-f", "qcow2", "-u", "-F", "raw", "-b", "http://"+httpAddr+"/x.img")
		}, false, "http://" + httpAddr},
		{"data file", func(map[string]string) string {
			return qemuImgCreate(t, filepath.Join(imgs, "datafile.qcow2"), "-f", "qcow2", "-o", "data_file="+dataRaw)
		}, false, `external data file "` + dataRaw},
		{"vmdk descriptor", func(map[string]string) string { return descriptor }, false, `extent "` + shadow},
		{"vmdk sparse", func(map[string]string) string {
			return kdmv(t, filepath.Join(imgs, "sparse.vmdk"), 0,
				"version=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 32768 FLAT \""+shadow+"\" 0\n")
		}, false, `extent "` + shadow},
		{"vmdk parent", func(map[string]string) string {
			return kdmv(t, filepath.Join(imgs, "child.vmdk"), 32768, "version=1\nparentFileNameHint=\""+shadow+"\"\n")
		}, false, `parent "` + shadow},
		{"download", func(map[string]string) string {
			return srv.URL + "/served.qcow2"
		}, true, `backing file "` + shadow},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, record := standInEnv(t)
			image := tc.bootFrom(env)
			env["BOOT_FROM"] = image
			if tc.sha256 {
				env["BOOT_FROM_SHA256"] = fileSHA256(t, served)
			}
			opened := watchOpens(t, secrets)
			othersOpened := func() []string { return nil }
			if other := filepath.Join(env["DATA_DIR"], "vms", "othervm"); exists(other) {
				othersOpened = watchOpens(t, other)
			}
			v := runOnce(t, env)
			if code := v.ExitCode(); code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			for _, want := range []string{"BOOT_FROM=", image, tc.reference} {
				if !strings.Contains(v.Stderr(), want) {
					t.Errorf("the error lacks %q:\n%s", want, v.Stderr())
				}
			}
			if got := opened(); len(got) > 0 {
				t.Errorf("opened in the watched folder: %v", got)
			}
			if got := othersOpened(); len(got) > 0 {
				t.Errorf("opened another VM's files: %v", got)
			}
			if n, m := nbdConns.Load(), httpConns.Load(); n+m > 0 {
				t.Errorf("connections: nbd listener %d, http listener %d; want none", n, m)
			}
			if !tc.sha256 {
				// --dry-run refuses what a start refuses.
				dry := exec.Command(binary, "--dry-run")
				dry.Env = []string{"PATH=" + os.Getenv("PATH")}
				for k, val := range env {
					dry.Env = append(dry.Env, k+"="+val)
				}
				out, err := dry.CombinedOutput()
				if code := dry.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), tc.reference) {
					t.Errorf("--dry-run: exit %d (%v), want 2 naming %s:\n%s", code, err, tc.reference, out)
				}
			}
			state := filepath.Join(env["DATA_DIR"], "vms", env["GUEST_NAME"])
			converted, _ := filepath.Glob(filepath.Join(env["DATA_DIR"], "cache", "converted-*"))
			if exists(state) || exists(record) || len(converted) > 0 {
				t.Errorf("state folder made %v, QEMU ran %v, converted %q", exists(state), exists(record), converted)
			}
		})
	}
}

// TestHostileImagePinnedRaw: BOOT_FROM_FORMAT=raw makes a file that looks
// like a qcow2 with a backing file a raw disk: nothing it names is opened,
// and QEMU opens it as raw; a pinned format the header contradicts is
// refused on BOOT_FROM_FORMAT.
func TestHostileImagePinnedRaw(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the built vmrunner")
	}
	need(t, "qemu-img on PATH", haveTool("qemu-img"))
	secrets := t.TempDir()
	shadow := filepath.Join(secrets, "shadow")
	if err := os.WriteFile(shadow, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	image := qemuImgCreate(t, filepath.Join(t.TempDir(), "looks-like.qcow2"), "-f", "qcow2", "-u", "-F", "raw", "-b", shadow)
	opened := watchOpens(t, secrets)

	env, record := standInEnv(t)
	env["BOOT_FROM"], env["BOOT_FROM_FORMAT"] = image, "raw"
	v := runOnce(t, env)
	if v.ExitCode() != 0 {
		t.Fatalf("exit %d\n%s", v.ExitCode(), v.Stderr())
	}
	args, _ := os.ReadFile(record)
	if want := `{"driver":"raw","node-name":"disk0-base","read-only":true,"file":{"driver":"file","filename":"` + image + `"`; !strings.Contains(string(args), want) {
		t.Errorf("QEMU's arguments lack %s:\n%s", want, args)
	}
	if got := opened(); len(got) > 0 {
		t.Errorf("opened in the watched folder: %v", got)
	}

	env, record = standInEnv(t)
	env["BOOT_FROM"], env["BOOT_FROM_FORMAT"] = image, "vmdk"
	v = runOnce(t, env)
	if v.ExitCode() != 2 || !strings.Contains(v.Stderr(), `BOOT_FROM_FORMAT="vmdk"`) || !strings.Contains(v.Stderr(), "the header says qcow2") {
		t.Errorf("vmdk pinned on a qcow2: exit %d\n%s", v.ExitCode(), v.Stderr())
	}
	if exists(record) || exists(filepath.Join(env["DATA_DIR"], "vms")) {
		t.Error("QEMU ran or a state folder was made")
	}
}

// TestHostileImageSwappedBase: a base that turns hostile after vmrunner
// checked it (swapped between the check and QEMU's start) is still opened
// with no backing of its own: real QEMU, started by vmrunner, never opens
// the FIFO the swapped base names (an open would block it, and the
// writer end waiting here would return).
func TestHostileImageSwappedBase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the built vmrunner and QEMU")
	}
	need(t, "qemu-img on PATH", haveTool("qemu-img"))
	need(t, "qemu-system-x86_64 on PATH", haveQEMU())
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	base := qemuImgCreate(t, filepath.Join(dir, "base.qcow2"), "-f", "qcow2")
	hostile := qemuImgCreate(t, filepath.Join(dir, "hostile.qcow2"), "-f", "qcow2", "-u", "-F", "raw", "-b", fifo)
	var readerCame atomic.Bool
	go func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil { // blocks until a reader opens it
			readerCame.Store(true)
			f.Close()
		}
	}()
	// The stand-in QEMU swaps the base, then runs the real one for a few
	// seconds: long enough to open every disk.
	env, _ := standInEnv(t)
	wrapper := filepath.Join(dir, "qemu")
	script := fmt.Sprintf("#!/bin/sh\ncp %s %s\nexec timeout -s KILL 5 qemu-system-x86_64 \"$@\" -S\n", hostile, base)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env["QEMU_BINARY"], env["BOOT_FROM"] = wrapper, base
	delete(env, "KERNEL") // boot from the disk: SeaBIOS, held by -S
	start := time.Now()
	v := runOnce(t, env)
	if readerCame.Load() {
		t.Fatal("QEMU opened the FIFO the swapped base names")
	}
	if time.Since(start) < 4*time.Second {
		t.Errorf("QEMU did not run until killed (exit %d after %s):\n%s", v.ExitCode(), time.Since(start), v.Stderr())
	}
	// Let the writer go.
	if f, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
		f.Close()
	}
}
