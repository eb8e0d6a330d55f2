package vm

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/image"
	"github.com/vmrunner/vmrunner/qemu"
)

// prepareEnv is a VM with a blank disk, one extra disk, UEFI and nothing
// that needs root: no seed, no network.
func prepareEnv(data string) map[string]string {
	return map[string]string{
		"DATA_DIR": data, "GUEST_NAME": "vm", "BOOT_FROM": "blank", "DISK_SIZE": "64M", "DISK2_SIZE": "32M",
		"CLOUD_INIT": "0", "NETWORK_MODE": "none",
	}
}

// preparePlan plans env with a UEFI vars template of our own.
func preparePlan(t *testing.T, env map[string]string, mounted bool) *Plan {
	t.Helper()
	f := testFacts()
	f.DataDirMounted = mounted
	p := plan(t, env, f)
	tmpl := filepath.Join(env["DATA_DIR"], "..", "OVMF_VARS.fd")
	p.Firmwares[config.BootUEFI] = Firmware{Code: p.Spec.Firmware.Code, VarsTemplate: tmpl}
	if err := os.WriteFile(tmpl, []byte("template"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func needQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("no qemu-img")
	}
}

func runCmd(_ context.Context, cmd *exec.Cmd) ([]byte, error) { return cmd.CombinedOutput() }

// mustPrepare runs the once-per-VM start-up and one run's, which it
// releases at once.
func mustPrepare(t *testing.T, p *Plan) *Prepared {
	t.Helper()
	prep, err := Prepare(context.Background(), p, Tools{Run: runCmd})
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	r, err := StartRun(context.Background(), p, prep, FirstSettings(prep))
	if err != nil {
		t.Fatalf("StartRun: %v", err)
	}
	if err := r.Release(); err != nil {
		t.Fatalf("releasing the run: %v", err)
	}
	return prep
}

func virtualSize(t *testing.T, path string) int64 {
	t.Helper()
	img, err := image.Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	return img.VirtualSize
}

// TestPrepareKeepsDisksAndVarsWithPersist: disks are made once and grown,
// never shrunk, and the UEFI variables the guest changed are reused.
func TestPrepareKeepsDisksAndVarsWithPersist(t *testing.T) {
	needQemuImg(t)
	data := filepath.Join(t.TempDir(), "data")
	env := prepareEnv(data)
	env["PERSIST"] = "1"
	p := preparePlan(t, env, false)
	mustPrepare(t, p).Release()
	if got := virtualSize(t, p.Paths.Disk); got != 64<<20 {
		t.Errorf("disk.qcow2 is %d bytes, want 64M", got)
	}
	if got := virtualSize(t, p.Paths.ExtraDisk(2)); got != 32<<20 {
		t.Errorf("disk2.qcow2 is %d bytes, want 32M", got)
	}
	if b, err := os.ReadFile(p.Paths.Vars); err != nil || string(b) != "template" {
		t.Fatalf("efivars.fd = %q, %v; want the template's copy", b, err)
	}
	if err := os.WriteFile(p.Paths.Vars, []byte("boot entries the guest wrote"), 0o644); err != nil {
		t.Fatal(err)
	}

	env["DISK2_SIZE"] = "48M"
	env["DISK_SIZE"] = "32M"
	p = preparePlan(t, env, false)
	prep := mustPrepare(t, p)
	prep.Release()
	if got := virtualSize(t, p.Paths.ExtraDisk(2)); got != 48<<20 {
		t.Errorf("disk2.qcow2 is %d bytes after DISK2_SIZE=48M, want it grown", got)
	}
	if got := virtualSize(t, p.Paths.Disk); got != 64<<20 {
		t.Errorf("disk.qcow2 is %d bytes after DISK_SIZE=32M, want 64M kept", got)
	}
	if !slices.ContainsFunc(prep.Warnings, func(w string) bool { return strings.HasPrefix(w, "DISK_SIZE is smaller") }) {
		t.Errorf("warnings %q lack the refused shrink", prep.Warnings)
	}
	if b, _ := os.ReadFile(p.Paths.Vars); string(b) != "boot entries the guest wrote" {
		t.Errorf("efivars.fd = %q after a restart, want the guest's variables kept", b)
	}

	env["DISK2_SIZE"] = "16M"
	prep = mustPrepare(t, preparePlan(t, env, false))
	prep.Release()
	if !slices.ContainsFunc(prep.Warnings, func(w string) bool { return strings.HasPrefix(w, "DISK2_SIZE is smaller than the disk (16M < 48M)") }) {
		t.Errorf("warnings %q lack DISK2_SIZE's refused shrink", prep.Warnings)
	}
}

// TestPrepareRemovesStateWithoutPersist: the state folder (disks, UEFI
// variables) goes when the VM ends; the cache stays.
func TestPrepareRemovesStateWithoutPersist(t *testing.T) {
	needQemuImg(t)
	data := filepath.Join(t.TempDir(), "data")
	cached := filepath.Join(data, "cache", "image.qcow2")
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cached, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		persist string
		mounted bool
		kept    bool
	}{
		{"DATA_DIR not mounted", "", false, false},
		{"DATA_DIR mounted", "", true, true},
		{"PERSIST=0 on a mount", "0", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := prepareEnv(data)
			env["PERSIST"] = tc.persist
			p := preparePlan(t, env, tc.mounted)
			prep := mustPrepare(t, p)
			for _, f := range []string{p.Paths.Disk, p.Paths.ExtraDisk(2), p.Paths.Vars, p.Paths.Lock} {
				if _, err := os.Stat(f); err != nil {
					t.Errorf("while the VM runs: %v", err)
				}
			}
			prep.Release()
			if _, err := os.Stat(p.Paths.State); (err == nil) != tc.kept {
				t.Errorf("state folder after the end: %v, want kept %v", err, tc.kept)
			}
			if _, err := os.Stat(cached); err != nil {
				t.Errorf("the cache went too: %v", err)
			}
			os.RemoveAll(p.Paths.State)
		})
	}
}

// TestPrepareUndoesDisksOnFailure: a failing qemu-img leaves no disk that
// this start made, in a state folder that was there before.
func TestPrepareUndoesDisksOnFailure(t *testing.T) {
	needQemuImg(t)
	data := filepath.Join(t.TempDir(), "data")
	env := prepareEnv(data)
	env["PERSIST"] = "1"
	p := preparePlan(t, env, true)
	if err := os.MkdirAll(p.Paths.State, 0o755); err != nil {
		t.Fatal(err)
	}
	calls := 0
	failSecond := func(_ context.Context, cmd *exec.Cmd) ([]byte, error) {
		if calls++; calls == 2 {
			return nil, errors.New("disk full")
		}
		return cmd.CombinedOutput()
	}
	if _, err := Prepare(context.Background(), p, Tools{Run: failSecond}); err == nil || !strings.Contains(err.Error(), "disks: qemu-img create "+p.Paths.ExtraDisk(2)+": disk full") {
		t.Fatalf("Prepare error %v, want the disks step's", err)
	}
	for _, f := range []string{p.Paths.Disk, p.Paths.ExtraDisk(2)} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after a failed start: %v", f, err)
		}
	}
}

// TestQEMUSpecBootOrder: the installer ISO boots before the disk; another
// medium only when asked; the UUID and an always-present CD drive are
// there; a boot mode without firmware is refused.
func TestQEMUSpecBootOrder(t *testing.T) {
	p := plan(t, map[string]string{"DATA_DIR": "/data", "BOOT_FROM": "blank"}, testFacts())
	installer := &Prepared{CDROM: "/iso/installer.iso", UUID: "u"}
	blank := &Prepared{UUID: "u"}
	for _, tc := range []struct {
		name string
		prep *Prepared
		s    Settings
		boot qemu.BootDevice
		cd   string
	}{
		{"installer first", installer, FirstSettings(installer), qemu.BootDefault, "/iso/installer.iso"},
		{"installer ejected", installer, Settings{}, qemu.BootDefault, ""},
		{"inserted medium after the disk", blank, Settings{Medium: "/iso/rescue.iso"}, qemu.BootDisk, "/iso/rescue.iso"},
		{"inserted medium asked for", blank, Settings{Medium: "/iso/rescue.iso", Boot: qemu.BootCD}, qemu.BootCD, "/iso/rescue.iso"},
		{"network", blank, Settings{Boot: qemu.BootNetwork}, qemu.BootNetwork, ""},
	} {
		spec, err := p.QEMUSpec(tc.prep, tc.s)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if spec.Boot != tc.boot || spec.CDROM != tc.cd || !spec.CDDrive || spec.UUID != "u" {
			t.Errorf("%s: boot %q cd %q drive %v uuid %q; want boot %q cd %q", tc.name, spec.Boot, spec.CDROM, spec.CDDrive, spec.UUID, tc.boot, tc.cd)
		}
	}
	// Once installed, the installer boots after the disk unless FORCE_ISO
	// or BOOT_ORDER says otherwise; an override wins over BOOT_ORDER.
	installed := &Prepared{CDROM: "/iso/installer.iso", UUID: "u", Installed: true}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		s     Settings
		boot  qemu.BootDevice
		order []qemu.BootDevice
	}{
		{"installed", nil, FirstSettings(installed), qemu.BootDefault, []qemu.BootDevice{qemu.BootDisk, qemu.BootCD}},
		{"installed, FORCE_ISO=1", map[string]string{"FORCE_ISO": "1"}, FirstSettings(installed), qemu.BootDefault, nil},
		{"BOOT_ORDER=network,hd", map[string]string{"BOOT_ORDER": "network,hd"}, FirstSettings(installed), qemu.BootDefault, []qemu.BootDevice{qemu.BootNetwork, qemu.BootDisk}},
		{"BOOT_ORDER=network,hd, boot cd", map[string]string{"BOOT_ORDER": "network,hd"}, Settings{Boot: qemu.BootCD}, qemu.BootCD, []qemu.BootDevice{qemu.BootNetwork, qemu.BootDisk}},
	} {
		env := map[string]string{"DATA_DIR": "/data", "BOOT_FROM": "blank"}
		maps.Copy(env, tc.env)
		spec, err := plan(t, env, testFacts()).QEMUSpec(installed, tc.s)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if spec.Boot != tc.boot || !slices.Equal(spec.BootOrder, tc.order) {
			t.Errorf("%s: boot %q order %q; want %q %q", tc.name, spec.Boot, spec.BootOrder, tc.boot, tc.order)
		}
	}
	spec, err := p.QEMUSpec(blank, Settings{BootMode: config.BootLegacy})
	if err != nil || spec.Firmware != nil {
		t.Errorf("legacy: firmware %+v, %v", spec.Firmware, err)
	}
	delete(p.Firmwares, config.BootSecure)
	if _, err := p.QEMUSpec(blank, Settings{BootMode: config.BootSecure}); err == nil {
		t.Error("secure without its firmware: no error")
	}
}

// TestDryRunIsTheStart: --dry-run's spec is the first start's, for each
// kind of local BOOT_FROM the plan decides on (a base as it is, a copy
// converted into the cache, an installer CD), and the plan's warnings come
// with it.
func TestDryRunIsTheStart(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	img := func(name, format string) string {
		p := filepath.Join(dir, name)
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", format, p, "16M").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v: %s", err, out)
		}
		return p
	}
	iso := filepath.Join(dir, "install.iso")
	data := make([]byte, 0x9000)
	copy(data[0x8001:], "CD001")
	if err := os.WriteFile(iso, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, guest, from string
		check             func(b *BaseChoice) bool
	}{
		{"qcow2", "q", img("base.qcow2", "qcow2"), func(b *BaseChoice) bool { return b.Info.Format == "qcow2" && b.ConvertFrom == "" }},
		{"vmdk, converted", "v", img("base.vmdk", "vmdk"), func(b *BaseChoice) bool {
			return b.Info.Format == "qcow2" && strings.HasSuffix(b.ConvertFrom, "base.vmdk") && strings.HasPrefix(b.Path, filepath.Join(dir, "data", "cache")+"/")
		}},
		{"ISO", "i", iso, func(b *BaseChoice) bool { return b.CDROM == iso && b.Path == "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := prepareEnv(filepath.Join(dir, "data"))
			env["GUEST_NAME"], env["BOOT_FROM"], env["GUEST_SHELL"], env["CLOUD_INIT"] = tc.guest, tc.from, "/bin/zsh", "1"
			p := preparePlan(t, env, true)
			p.Spec.Seed = "" // no seed written: the test needs no genisoimage
			if p.Base == nil || !tc.check(p.Base) {
				t.Fatalf("plan's base %+v", p.Base)
			}
			dry, warnings, err := p.DryRunSpec()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "SHELL=/bin/zsh") }) {
				t.Errorf("--dry-run drops the plan's warnings: %q", warnings)
			}
			prep := mustPrepare(t, p)
			defer prep.Release()
			start, err := p.QEMUSpec(prep, FirstSettings(prep))
			if err != nil {
				t.Fatal(err)
			}
			dry.UUID = start.UUID // made by the start
			if d, s := qemu.Args(dry), qemu.Args(start); !slices.Equal(d, s) {
				t.Errorf("--dry-run differs from the start:\n%q\n%q", d, s)
			}
			if !slices.Equal(prep.Warnings[:len(warnings)], warnings) {
				t.Errorf("start warnings %q, dry-run's %q", prep.Warnings, warnings)
			}
		})
	}
}
