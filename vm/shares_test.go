package vm

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vmrunner/vmrunner/cloudinit"
	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/qemu"
)

func TestPlanShares(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"DATA_DIR": "/data", "BOOT_FROM": "blank",
		"FILESYSTEM_SOURCE": dir, "FILESYSTEM_TARGET": "/srv/x",
		"FILESYSTEM2_SOURCE": dir, "FILESYSTEM2_DRIVER": "9p", "FILESYSTEM2_ACCESSMODE": "squash", "FILESYSTEM2_READONLY": "1",
		"FILESYSTEM3_SOURCE": dir, "FILESYSTEM3_DRIVER": "9p", "FILESYSTEM3_ACCESSMODE": "mapped",
		"FILESYSTEM4_SOURCE": dir, "FILESYSTEM4_READONLY": "1"}
	f := testFacts()
	f.Virtiofsd = "/usr/lib/qemu/virtiofsd"
	p := plan(t, env, f)
	st := "/data/vms/testhost"
	want := []qemu.Share{
		{ID: "fs1", Tag: "share1", Virtiofs: true, Socket: st + "/virtiofs-1.sock"},
		{ID: "fs2", Tag: "share2", Path: dir, SecurityModel: "none", ReadOnly: true},
		{ID: "fs3", Tag: "share3", Path: dir, SecurityModel: "mapped-xattr"},
		{ID: "fs4", Tag: "share4", Virtiofs: true, Socket: st + "/virtiofs-4.sock"},
	}
	if !reflect.DeepEqual(p.Spec.Shares, want) {
		t.Errorf("shares\n got %+v\nwant %+v", p.Spec.Shares, want)
	}
	if want := []VirtiofsdPlan{{Binary: f.Virtiofsd, Source: dir, Socket: st + "/virtiofs-1.sock"}, {Binary: f.Virtiofsd, Source: dir, Socket: st + "/virtiofs-4.sock", ReadOnly: true}}; !reflect.DeepEqual(p.Virtiofsd, want) {
		t.Errorf("virtiofsd %+v, want %+v", p.Virtiofsd, want)
	}
	wantMounts := []cloudinit.Mount{{Tag: "share1", Target: "/srv/x", Virtiofs: true}, {Tag: "share2", Target: "/mnt/share2", ReadOnly: true}, {Tag: "share3", Target: "/mnt/share3"}, {Tag: "share4", Target: "/mnt/share4", Virtiofs: true, ReadOnly: true}}
	if !reflect.DeepEqual(p.Mounts, wantMounts) {
		t.Errorf("mounts %+v, want %+v", p.Mounts, wantMounts)
	}
	if len(p.Warnings) != 0 {
		t.Errorf("warnings %q", p.Warnings)
	}
	// A confined QEMU gets virtiofsd's socket with its own files; the 9p
	// folders are checked (read-only: read; else read-write), not handed
	// over. Neither mapped nor squash needs QEMU as root.
	own, read, write := p.QEMUFiles(p.Spec, "")
	if !slices.Contains(own, st+"/virtiofs-1.sock") || !slices.Contains(read, dir) || !slices.Equal(write, []string{dir}) || slices.Contains(own, dir) {
		t.Errorf("QEMU's files: own %q, read %q, write %q; want the virtiofs socket among its own, the 9p folder read once and written once", own, read, write)
	}
	if why := p.QEMURoot(p.Spec); why != "" {
		t.Errorf("QEMURoot = %q, want none", why)
	}

	// No virtiofsd: the default driver falls back with a warning …
	p = plan(t, map[string]string{"DATA_DIR": "/data", "BOOT_FROM": "blank", "FILESYSTEM_SOURCE": dir}, testFacts())
	if len(p.Spec.Shares) != 1 || p.Spec.Shares[0].Virtiofs || p.Spec.Shares[0].SecurityModel != "passthrough" || len(p.Virtiofsd) != 0 {
		t.Errorf("fallback share %+v", p.Spec.Shares)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "9p instead") {
		t.Errorf("warnings %q", p.Warnings)
	}
	// 9p passthrough chowns as the guest asks: QEMU must stay root …
	if why := p.QEMURoot(p.Spec); !strings.Contains(why, dir+" is served over 9p with ACCESSMODE=passthrough") {
		t.Errorf("QEMURoot = %q", why)
	}
	// … unless the share is read-only.
	p = plan(t, map[string]string{"DATA_DIR": "/data", "BOOT_FROM": "blank", "FILESYSTEM_SOURCE": dir, "FILESYSTEM_DRIVER": "9p", "FILESYSTEM_READONLY": "1"}, testFacts())
	if why := p.QEMURoot(p.Spec); why != "" {
		t.Errorf("QEMURoot (read-only) = %q, want none", why)
	}
	// … an explicit one is refused with advice.
	_, err := MakePlan(loadConfig(t, map[string]string{"DATA_DIR": "/data", "BOOT_FROM": "blank", "FILESYSTEM_SOURCE": dir, "FILESYSTEM_DRIVER": "virtiofs"}), testFacts())
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "FILESYSTEM_DRIVER" || !strings.Contains(ce.Accepted, "9p") {
		t.Errorf("explicit virtiofs without virtiofsd: %v", err)
	}
}

// TestVirtiofsdStep runs Debian's virtiofsd as start-up would: its socket
// appears, and undo stops it and removes the socket.
func TestVirtiofsdStep(t *testing.T) {
	bin := FindVirtiofsd()
	if bin == "" || os.Geteuid() != 0 {
		t.Skip("needs virtiofsd (qemu-system-common) and root")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "virtiofs-1.sock")
	p := &Plan{Virtiofsd: []VirtiofsdPlan{{Binary: bin, Source: t.TempDir(), Socket: sock}}}
	out := &Run{}
	if err := p.virtiofsds(out); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket: %v", err)
	}
	t.Logf("warnings: %q", out.Warnings)
	if err := out.Release(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after undo: %v", err)
	}
}

func TestVirtiofsdStepFails(t *testing.T) {
	dir := t.TempDir()
	p := &Plan{Virtiofsd: []VirtiofsdPlan{{Binary: "/bin/false", Source: dir, Socket: filepath.Join(dir, "s.sock")}}}
	if err := p.virtiofsds(&Run{}); err == nil || !strings.Contains(err.Error(), "FILESYSTEM_DRIVER=9p") {
		t.Errorf("err %v", err)
	}
}

// A virtiofs socket's name is longer than QMP's: a DATA_DIR that fits the
// QMP sockets may not fit it, and must be refused at planning.
func TestShareSocketPathLength(t *testing.T) {
	dir := t.TempDir()
	f := testFacts()
	f.Virtiofsd = "/usr/lib/qemu/virtiofsd"
	dataDir := "/" + strings.Repeat("d", maxSocketPath-len("/vms/vm/qmp-probe.sock")-1)
	env := map[string]string{"DATA_DIR": dataDir, "GUEST_NAME": "vm", "BOOT_FROM": "blank"}
	plan(t, env, f) // no share: fits
	env["FILESYSTEM_SOURCE"] = dir
	_, err := MakePlan(loadConfig(t, env), f)
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "DATA_DIR" || !strings.Contains(ce.Accepted, "virtiofs-1.sock") {
		t.Errorf("error %v, want a DATA_DIR error naming the virtiofs socket", err)
	}
}

// TestReadOnlyView: the thread that will start a read-only share's
// virtiofsd sees the folder and everything below it read-only; the rest of
// the host still writes there.
func TestReadOnlyView(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a mount namespace)")
	}
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	done := make(chan []error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		if err := readOnlyView(dir); err != nil {
			done <- []error{err}
			return
		}
		done <- []error{os.WriteFile(filepath.Join(dir, "x"), nil, 0o600), os.Mkdir(filepath.Join(sub, "y"), 0o700), os.Chmod(dir, 0o777)}
	}()
	errs := <-done
	if len(errs) == 1 {
		t.Fatal(errs[0])
	}
	for _, err := range errs {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("a write in the read-only view: %v, want EROFS", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o600); err != nil {
		t.Errorf("the host's own view became read-only: %v", err)
	}
}
