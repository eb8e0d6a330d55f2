package vm

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrunner/vmrunner/config"
)

func TestPlanTPM(t *testing.T) {
	noSwtpm := func(f *Facts) { f.Swtpm = "" }
	tests := []struct {
		name    string
		env     map[string]string
		facts   func(*Facts)
		mode    config.BootMode // the run's boot mode; "": BOOT_MODE
		tpm     bool
		errVar  string
		warning string
	}{
		{name: "auto, uefi", tpm: false},
		{name: "auto, secure", env: map[string]string{"BOOT_MODE": "secure"}, tpm: true},
		{name: "auto, switched to secure for a run", mode: config.BootSecure, tpm: true},
		{name: "auto, secure switched to uefi for a run", env: map[string]string{"BOOT_MODE": "secure"}, mode: config.BootUEFI, tpm: false},
		{name: "1, legacy", env: map[string]string{"TPM": "1", "BOOT_MODE": "legacy"}, tpm: true},
		{name: "0, secure", env: map[string]string{"TPM": "0", "BOOT_MODE": "secure"}, tpm: false},
		{name: "1 without swtpm", env: map[string]string{"TPM": "1"}, facts: noSwtpm, errVar: "TPM"},
		{name: "auto, secure, without swtpm", env: map[string]string{"BOOT_MODE": "secure"}, facts: noSwtpm, tpm: false, warning: "apt-get install swtpm"},
		{name: "auto, uefi, without swtpm", facts: noSwtpm, tpm: false},
		{name: "comma in DATA_DIR", env: map[string]string{"TPM": "1", "DATA_DIR": "/data,1"}, errVar: "DATA_DIR"},
		{name: "comma in DATA_DIR, no TPM", env: map[string]string{"DATA_DIR": "/data,1"}, tpm: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"DATA_DIR": "/data", "BOOT_FROM": "blank"}
			for k, v := range tc.env {
				env[k] = v
			}
			f := testFacts()
			if tc.facts != nil {
				tc.facts(&f)
			}
			p, err := MakePlan(loadConfig(t, env), f)
			if tc.errVar != "" {
				var ce *config.Error
				if !errors.As(err, &ce) || ce.Var != tc.errVar {
					t.Fatalf("MakePlan: %v, want a %s error", err, tc.errVar)
				}
				if tc.errVar == "TPM" && !strings.Contains(err.Error(), "apt-get install swtpm") {
					t.Errorf("%v: no advice to install swtpm", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			spec, err := p.QEMUSpec(&Prepared{}, Settings{BootMode: tc.mode})
			if err != nil {
				t.Fatal(err)
			}
			if got := spec.TPM != nil; got != tc.tpm {
				t.Errorf("TPM in the run's spec: %v, want %v", got, tc.tpm)
			}
			if tc.tpm && spec.TPM.Socket != "/data/vms/testhost/tpm.sock" {
				t.Errorf("TPM socket %q", spec.TPM.Socket)
			}
			warned := slices.ContainsFunc(p.Warnings, func(w string) bool { return tc.warning != "" && strings.Contains(w, tc.warning) })
			if warned != (tc.warning != "") {
				t.Errorf("warnings %q, want one saying %q", p.Warnings, tc.warning)
			}
		})
	}
}

func TestSwtpmArgs(t *testing.T) {
	p := plan(t, map[string]string{"DATA_DIR": "/data", "GUEST_NAME": "win", "TPM": "1"}, testFacts())
	want := []string{"socket", "--tpm2", "--tpmstate", "dir=/data/vms/win/tpm,mode=0600",
		"--ctrl", "type=unixio,path=/data/vms/win/tpm.sock,mode=0600", "--terminate"}
	if got := p.TPM.Args(); !slices.Equal(got, want) {
		t.Errorf("swtpm args %q, want %q", got, want)
	}
}

func TestPlanGPU(t *testing.T) {
	c := loadConfig(t, map[string]string{"GPU": "intel"})
	_, err := MakePlan(c, testFacts())
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "GPU" || !strings.Contains(ce.Accepted, "--device /dev/dri/renderD128") {
		t.Fatalf("GPU=intel without a render node: %v, want a GPU error with advice", err)
	}
	f := testFacts()
	f.RenderNodes = []string{"/dev/dri/renderD128"}
	p, err := MakePlan(c, f)
	if err != nil {
		t.Fatal(err)
	}
	_, _, write := p.QEMUFiles(p.Spec, "")
	if !slices.Contains(write, "/dev/dri/renderD128") {
		t.Errorf("QEMUFiles write %q lacks the render node: a confined QEMU must be able to open it", write)
	}
	if got := p.QEMUDevices(p.Spec); !slices.Equal(got, []string{"/dev/dri/renderD128"}) {
		t.Errorf("QEMUDevices %q, want the render node, whose group QEMU joins", got)
	}
	f.VirglMissing = true
	if _, err := MakePlan(c, f); !errors.As(err, &ce) || ce.Var != "GPU" || !strings.Contains(ce.Accepted, "qemu-system-gui") {
		t.Errorf("GPU=intel with Debian's QEMU lacking its GL module: %v, want a GPU error naming qemu-system-gui", err)
	}
	if got := p.QEMUDevices(plan(t, nil, testFacts()).Spec); got != nil {
		t.Errorf("QEMUDevices without a GPU: %q", got)
	}
}

func TestTPMFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tpm")
	uid, gid := os.Geteuid(), os.Getegid()
	if err := tpmFolder(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tpm2-00.permall"), []byte("state"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	if err := tpmFolder(dir, uid, gid); err != nil { // a second run keeps the state
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("TPM folder mode %v (%v), want 0700", st.Mode(), err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "tpm2-00.permall")); err != nil || string(b) != "state" {
		t.Errorf("TPM state after a second run: %q, %v", b, err)
	}

	// A symlink put in its place (QEMU's user may write the state folder)
	// is refused, not followed.
	target := t.TempDir()
	link := filepath.Join(t.TempDir(), "tpm")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	os.Chmod(target, 0o755)
	if err := tpmFolder(link, uid, gid); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("tpmFolder on a symlink: %v, want ErrNotPrivate", err)
	}
	if st, _ := os.Stat(target); st.Mode().Perm() != 0o755 {
		t.Errorf("the symlink's target was changed: %v", st.Mode())
	}
}

// TestStartTPM runs Debian's swtpm as a run's TPM: its socket appears,
// and the run's release stops it and removes the socket.
func TestStartTPM(t *testing.T) {
	bin := FindSwtpm()
	if bin == "" {
		t.Skip("swtpm is not installed (apt-get install swtpm; scripts/test-deps.sh does)")
	}
	dir, err := os.MkdirTemp("", "hw-tpm-") // short: a unix socket's path
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	f := testFacts()
	f.Swtpm = bin
	p := plan(t, map[string]string{"DATA_DIR": dir, "TPM": "1", "BOOT_FROM": "blank"}, f)
	if err := os.MkdirAll(p.Paths.State, 0o700); err != nil {
		t.Fatal(err)
	}
	r := &Run{Spec: p.Spec, tpm: p.TPM}
	var pid int
	start := func(cmd *exec.Cmd) (<-chan unix.WaitStatus, error) {
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		pid = cmd.Process.Pid
		ch := make(chan unix.WaitStatus, 1)
		go func() {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(cmd.Process.Pid, &ws, 0, nil)
			ch <- ws
		}()
		return ch, nil
	}
	if err := r.StartTPM(start, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(p.TPM.Socket); err != nil || st.Mode().Type() != os.ModeSocket {
		t.Fatalf("no swtpm socket at %s: %v", p.TPM.Socket, err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("swtpm (pid %d) is not running: %v", pid, err)
	}
	if err := r.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p.TPM.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after release: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("swtpm (pid %d) still runs after the run's release", pid)
	}
	if st, err := os.Stat(p.TPM.State); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("TPM state folder: %v, %v; want it kept, 0700", st, err)
	}
}

// TestStartTPMRefusesSymlinks: QEMU's user may write the state folder; a
// symlink it put where the TPM's socket goes is neither followed nor
// removed, and no swtpm starts.
func TestStartTPMRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	p := plan(t, map[string]string{"DATA_DIR": dir, "TPM": "1", "BOOT_FROM": "blank"}, testFacts())
	if err := os.MkdirAll(p.Paths.State, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, p.TPM.Socket); err != nil {
		t.Fatal(err)
	}
	r := &Run{Spec: p.Spec, tpm: p.TPM}
	started := false
	start := func(*exec.Cmd) (<-chan unix.WaitStatus, error) { started = true; return nil, errors.New("not reached") }
	if err := r.StartTPM(start, nil); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("StartTPM with a symlinked socket: %v, want ErrNotPrivate", err)
	}
	if started {
		t.Error("swtpm was started")
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
		t.Errorf("the symlink's target: %q, %v", b, err)
	}
	if _, err := os.Lstat(p.TPM.Socket); err != nil {
		t.Errorf("the symlink was removed: %v", err)
	}
}
