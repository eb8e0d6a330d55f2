package integration

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writeTar writes a tar of the named members (name, content) to path.
func writeTar(t *testing.T, path string, members ...[2]string) {
	t.Helper()
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, m := range members {
		if err := w.WriteHeader(&tar.Header{Name: m[0], Mode: 0o644, Size: int64(len(m[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(m[1]))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestImageOVABoot boots the test guest on the disk of an OVA, as
// VirtualBox exports them (an .ovf, then a streamOptimized vmdk made by
// qemu-img), served by a loopback mirror: vmrunner unpacks the disk the
// .ovf names, converts it to qcow2 and the guest sees its mark.
func TestImageOVABoot(t *testing.T) {
	needGuest(t)
	need(t, "qemu-img on PATH", haveTool("qemu-img"))
	t.Parallel()
	srv := newImageServer(t)
	work := t.TempDir()
	raw, vmdk := filepath.Join(work, "disk.raw"), filepath.Join(work, "appliance-disk1.vmdk")
	markedRaw(t, raw, "ova-image")
	if out, err := exec.Command("qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	disk, err := os.ReadFile(vmdk)
	if err != nil {
		t.Fatal(err)
	}
	ovf := `<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:id="file1" ovf:href="appliance-disk1.vmdk"/></References>
  <DiskSection><Info>Virtual disk information</Info><Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="16777216"/></DiskSection>
</Envelope>`
	writeTar(t, filepath.Join(srv.dir, "appliance.ova"), [2]string{"appliance.ovf", ovf}, [2]string{"appliance-disk1.vmdk", string(disk)})

	env := GuestEnv(t)
	maps.Copy(env, map[string]string{
		"BOOT_FROM": srv.URL + "/appliance.ova", "BOOT_FROM_SHA256": fileSHA256(t, filepath.Join(srv.dir, "appliance.ova")),
		"DISK_SIZE": "32M",
	})
	v := Start(t, env)
	v.WaitReady()
	wantDisks(t, v, "vd", map[string]int64{"ova-image": 32 << 20})
	powerOff(t, v)
	converted, _ := filepath.Glob(filepath.Join(v.DataDir, "cache", "converted-*.qcow2"))
	if len(converted) != 1 {
		t.Errorf("converted copies in the cache: %q, want one", converted)
	}
}

// TestImageArchivesStart: a .tar.xz by URL and a local .zip are unpacked
// into the cache and back the VM's disk (a stand-in QEMU: no boot); a zip
// by URL with two disks and a local tar with a ../ member are refused
// (exit 2) naming BOOT_FROM, with nothing left in the cache but locks and
// no state folder.
func TestImageArchivesStart(t *testing.T) {
	need(t, "qemu-img on PATH", haveTool("qemu-img"))
	need(t, "xz on PATH", haveTool("xz"))
	t.Parallel()
	srv := newImageServer(t)
	work := t.TempDir()
	raw := markedRaw(t, filepath.Join(work, "disk.raw"), "archived")
	writeTar(t, filepath.Join(srv.dir, "disk.tar"), [2]string{"README", "hello"}, [2]string{"disk.raw", string(raw)})
	if out, err := exec.Command("xz", "-0", "-T1", filepath.Join(srv.dir, "disk.tar")).CombinedOutput(); err != nil {
		t.Fatalf("xz: %v\n%s", err, out)
	}
	zipOf := func(path string, members ...[2]string) {
		var buf bytes.Buffer
		w := zip.NewWriter(&buf)
		for _, m := range members {
			f, _ := w.Create(m[0])
			f.Write([]byte(m[1]))
		}
		w.Close()
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	localZip := filepath.Join(work, "disk.zip")
	zipOf(localZip, [2]string{"images/disk.img", string(raw)})
	zipOf(filepath.Join(srv.dir, "two.zip"), [2]string{"a.img", string(raw)}, [2]string{"b.img", string(raw)})
	evilTar := filepath.Join(work, "evil.tar")
	writeTar(t, evilTar, [2]string{"../../escaped.img", string(raw)})

	for _, tc := range []struct{ name, from string }{
		{"tar.xz by URL", srv.URL + "/disk.tar.xz"},
		{"local zip", localZip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, record := standInEnv(t)
			env["BOOT_FROM"], env["PERSIST"] = tc.from, "1"
			if strings.HasPrefix(tc.from, "http") {
				env["BOOT_FROM_SHA256"] = fileSHA256(t, filepath.Join(srv.dir, filepath.Base(tc.from)))
			}
			v := runOnce(t, env)
			if v.ExitCode() != 0 {
				t.Fatalf("exit %d\n%s", v.ExitCode(), v.Stderr())
			}
			state := filepath.Join(env["DATA_DIR"], "vms", env["GUEST_NAME"])
			backing := backingFile(t, filepath.Join(state, "disk.qcow2"))
			if b, err := os.ReadFile(backing); err != nil || !bytes.Equal(b, raw) || filepath.Dir(backing) != filepath.Join(env["DATA_DIR"], "cache") {
				t.Errorf("disk.qcow2 is backed by %s (%d bytes, %v), want the unpacked disk in the cache", backing, len(b), err)
			}
			if args, _ := os.ReadFile(record); !strings.Contains(string(args), "id=disk0,format=qcow2") {
				t.Errorf("QEMU did not get the disk:\n%s", args)
			}
		})
	}
	for _, tc := range []struct{ name, from, says string }{
		{"two disks by URL", srv.URL + "/two.zip", "several disk images"},
		{"local tar with a ../ member", evilTar, `"../../escaped.img" points outside the archive`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, record := standInEnv(t)
			env["BOOT_FROM"] = tc.from
			if strings.HasPrefix(tc.from, "http") {
				env["BOOT_FROM_SHA256"] = fileSHA256(t, filepath.Join(srv.dir, filepath.Base(tc.from)))
			}
			v := runOnce(t, env)
			if v.ExitCode() != 2 || !strings.Contains(v.Stderr(), "BOOT_FROM=") || !strings.Contains(v.Stderr(), tc.says) {
				t.Errorf("exit %d, want 2 with BOOT_FROM and %q in the log:\n%s", v.ExitCode(), tc.says, v.Stderr())
			}
			left, _ := filepath.Glob(filepath.Join(env["DATA_DIR"], "cache", "*"))
			for _, f := range left {
				if !strings.HasSuffix(f, ".lock") {
					t.Errorf("left in the cache: %s", f)
				}
			}
			if exists(filepath.Join(env["DATA_DIR"], "vms")) || exists(record) || exists(filepath.Join(work, "escaped.img")) || exists(filepath.Join(filepath.Dir(work), "escaped.img")) {
				t.Errorf("a state folder was made, QEMU ran, or the member escaped")
			}
		})
	}
}
