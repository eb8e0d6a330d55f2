package vm

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/image"
)

// TestDisksQemuImg checks the overlay qemu-img makes as PlanDisk asks is
// read back as such.
func TestDisksQemuImg(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("no qemu-img")
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	overlay := filepath.Join(dir, "overlay.qcow2")
	for _, args := range [][]string{
		{"create", "-q", "-f", "qcow2", base, "1G"},
		(DiskAction{Create: true, Size: 2 << 30, BackingFmt: "qcow2"}).QemuImgArgs(overlay, base),
	} {
		if out, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %q: %v\n%s", args, err, out)
		}
	}
	img, err := image.Inspect(base)
	if err != nil || img.Format != image.FormatQcow2 || img.VirtualSize != 1<<30 || len(img.Refs) != 0 {
		t.Errorf("base: %+v, %v", img, err)
	}
	img, err = image.Inspect(overlay)
	if err != nil || img.VirtualSize != 2<<30 || img.Backing != base || img.BackingFormat != "qcow2" {
		t.Errorf("overlay: %+v, %v", img, err)
	}
	if out, err := exec.Command(qemuImg, (DiskAction{Resize: true, Size: 3 << 30}).QemuImgArgs(overlay, base)...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img resize: %v\n%s", err, out)
	}
	if img, err = image.Inspect(overlay); err != nil || img.VirtualSize != 3<<30 {
		t.Errorf("resized overlay: %+v, %v", img, err)
	}
}

func TestPlanDisk(t *testing.T) {
	const G = 1 << 30
	qcowBase := &image.Info{Format: "qcow2", VirtualSize: 2 * G}
	rawBase := &image.Info{Format: "raw", VirtualSize: 3 * G}
	bigBase := &image.Info{Format: "qcow2", VirtualSize: 40 * G}
	overlay := func(size int64, backing string) *image.Info {
		o := &image.Info{Format: "qcow2", VirtualSize: size, Backing: backing}
		if backing != "" {
			o.Refs = []image.Ref{{Kind: "backing file", Name: backing}}
		}
		return o
	}
	tests := []struct {
		name     string
		base     *image.Info
		basePath string
		overlay  *image.Info
		want     int64
		action   DiskAction
		warn     string
		err      string
	}{
		{"create on qcow2 base", qcowBase, "/img/base.qcow2", nil, 20 * G,
			DiskAction{Create: true, Size: 20 * G, BackingFmt: "qcow2"}, "", ""},
		{"create on raw base", rawBase, "/img/base.raw", nil, 20 * G,
			DiskAction{Create: true, Size: 20 * G, BackingFmt: "raw"}, "", ""},
		{"create blank", nil, "", nil, 20 * G,
			DiskAction{Create: true, Size: 20 * G}, "", ""},
		{"base bigger than DISK_SIZE", bigBase, "/img/big.qcow2", nil, 20 * G,
			DiskAction{Create: true, Size: 40 * G, BackingFmt: "qcow2"}, "", ""},
		{"same size", qcowBase, "/img/base.qcow2", overlay(20*G, "/img/base.qcow2"), 20 * G,
			DiskAction{Size: 20 * G}, "", ""},
		{"grow", qcowBase, "/img/base.qcow2", overlay(20*G, "/img/base.qcow2"), 30 * G,
			DiskAction{Resize: true, Size: 30 * G}, "", ""},
		{"grow blank", nil, "", overlay(20*G, ""), 21 * G,
			DiskAction{Resize: true, Size: 21 * G}, "", ""},
		{"shrink refused", qcowBase, "/img/base.qcow2", overlay(20*G, "/img/base.qcow2"), 10 * G,
			DiskAction{Size: 20 * G}, "DISK_SIZE is smaller than the disk (10G < 20G): disks grow, never shrink; keeping 20G", ""},
		{"shrink refused, odd sizes", nil, "", overlay(1536<<20, ""), 512 << 20,
			DiskAction{Size: 1536 << 20}, "(512M < 1536M)", ""},
		{"backing changed", qcowBase, "/img/other.qcow2", overlay(20*G, "/img/base.qcow2"), 20 * G,
			DiskAction{}, "", `made on top of "/img/base.qcow2", but BOOT_FROM is now "/img/other.qcow2"`},
		{"blank disk, now a base", qcowBase, "/img/base.qcow2", overlay(20*G, ""), 20 * G,
			DiskAction{}, "", `made on top of "", but BOOT_FROM is now "/img/base.qcow2"`},
		{"disk with a data file", nil, "", &image.Info{Format: "qcow2", VirtualSize: G,
			Refs: []image.Ref{{Kind: "external data file", Name: "/dev/sda"}}}, G,
			DiskAction{}, "", `the VM's disk refers to external data file "/dev/sda"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := PlanDisk(tc.base, tc.basePath, tc.overlay, tc.want, "DISK_SIZE")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("PlanDisk = %+v, %v; want error %q", a, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			warn := a.Warning
			a.Warning = ""
			if a != tc.action {
				t.Errorf("PlanDisk = %+v, want %+v", a, tc.action)
			}
			if (tc.warn == "") != (warn == "") || !strings.Contains(warn, tc.warn) {
				t.Errorf("warning %q, want %q", warn, tc.warn)
			}
		})
	}
}

func TestQemuImgArgs(t *testing.T) {
	tests := []struct {
		name     string
		a        DiskAction
		basePath string
		want     []string
	}{
		{"create on base", DiskAction{Create: true, Size: 21474836480, BackingFmt: "qcow2"}, "/img/base.qcow2",
			[]string{"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "/img/base.qcow2", "/data/vms/vm/disk.qcow2", "21474836480"}},
		{"create on raw", DiskAction{Create: true, Size: 1 << 30, BackingFmt: "raw"}, "/img/base,1.raw",
			[]string{"create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/img/base,1.raw", "/data/vms/vm/disk.qcow2", "1073741824"}},
		{"create blank", DiskAction{Create: true, Size: 1 << 30}, "",
			[]string{"create", "-q", "-f", "qcow2", "/data/vms/vm/disk.qcow2", "1073741824"}},
		{"resize", DiskAction{Resize: true, Size: 32 << 30}, "/img/base.qcow2",
			[]string{"resize", "-q", "/data/vms/vm/disk.qcow2", "34359738368"}},
		{"ALLOCATE=1 on base", DiskAction{Create: true, Size: 1 << 30, BackingFmt: "qcow2", Preallocate: true}, "/img/base.qcow2",
			[]string{"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "/img/base.qcow2", "-o", "extended_l2=on,preallocation=falloc", "/data/vms/vm/disk.qcow2", "1073741824"}},
		{"ALLOCATE=1 blank", DiskAction{Create: true, Size: 1 << 30, Preallocate: true}, "",
			[]string{"create", "-q", "-f", "qcow2", "-o", "preallocation=falloc", "/data/vms/vm/disk.qcow2", "1073741824"}},
		{"ALLOCATE=1 resize", DiskAction{Resize: true, Size: 32 << 30, Preallocate: true}, "/img/base.qcow2",
			[]string{"resize", "-q", "--preallocation=falloc", "/data/vms/vm/disk.qcow2", "34359738368"}},
		{"nothing", DiskAction{Size: 1 << 30}, "/img/base.qcow2", nil},
		{"shrink refused", DiskAction{Size: 1 << 30, Warning: "keeping"}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.QemuImgArgs("/data/vms/vm/disk.qcow2", tc.basePath); !slices.Equal(got, tc.want) {
				t.Errorf("QemuImgArgs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHuman(t *testing.T) {
	for in, want := range map[int64]string{
		20 << 30:   "20G",
		1 << 30:    "1G",
		1536 << 20: "1536M",
		512 << 20:  "512M",
		1 << 20:    "1M",
		1000:       "1000 bytes",
	} {
		if got := human(in); got != want {
			t.Errorf("human(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestReviewedDiskEdges(t *testing.T) {
	if _, err := PlanDisk(nil, "", &image.Info{Format: "qcow2", Backing: "/img/base.qcow2", VirtualSize: 20 << 30}, 20<<30, "DISK_SIZE"); err == nil {
		t.Error("switching BOOT_FROM from an image to blank kept the old disk")
	}
}

func TestQemuImgEnvironment(t *testing.T) {
	t.Setenv("GUEST_PASSWORD", "secret")
	var got *exec.Cmd
	run := func(_ context.Context, cmd *exec.Cmd) ([]byte, error) {
		got = cmd
		return nil, nil
	}
	if _, err := qemuImg(context.Background(), run, "info", "x"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"PATH=" + os.Getenv("PATH"), "LANG=C"}; !slices.Equal(got.Env, want) {
		t.Errorf("environment %q, want %q", got.Env, want)
	}
	if got.SysProcAttr == nil || got.SysProcAttr.Pdeathsig != syscall.SIGKILL {
		t.Errorf("SysProcAttr %+v, want Pdeathsig SIGKILL", got.SysProcAttr)
	}
}

// TestBaseRefs: a BOOT_FROM that names another file is a configuration
// error of the plan, before anything is made or converted; one pinned as raw is used as
// raw, never parsed.
func TestBaseRefs(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	img := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		if out, err := exec.Command("qemu-img", append(append([]string{"create", "-q"}, args...), p, "1M")...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v: %s", err, out)
		}
		return p
	}
	desc := filepath.Join(dir, "desc.vmdk")
	if err := os.WriteFile(desc, []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\nRW 2048 FLAT \"/etc/hostname\" 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plain := img("plain.qcow2", "-f", "qcow2")
	tests := []struct {
		name, path, format string
		variable, reason   string
	}{
		{"backing", img("backing.qcow2", "-f", "qcow2", "-u", "-F", "raw", "-b", "/etc/hostname"), "", "BOOT_FROM", `backing file "/etc/hostname"`},
		{"data", img("data.qcow2", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "data.raw")), "", "BOOT_FROM", "external data file"},
		{"vmdk", desc, "", "BOOT_FROM", `extent "/etc/hostname"`},
		{"pinned", plain, "vmdk", "BOOT_FROM_FORMAT", "the header says qcow2, not vmdk"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := prepareEnv(filepath.Join(t.TempDir(), "data"))
			env["BOOT_FROM"], env["BOOT_FROM_FORMAT"] = tc.path, tc.format
			c := loadConfig(t, env)
			f := testFacts()
			f.BootImage, f.BootImageErr = InspectBootImage(c)
			p, err := MakePlan(c, f)
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != tc.variable || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("MakePlan = %+v, %v; want a config error on %s saying %q", p, err, tc.variable, tc.reason)
			}
			if _, err := os.Stat(env["DATA_DIR"]); !os.IsNotExist(err) {
				t.Errorf("DATA_DIR was made: %v", err)
			}
		})
	}
	t.Run("raw", func(t *testing.T) {
		env := prepareEnv(filepath.Join(t.TempDir(), "data"))
		env["BOOT_FROM"], env["BOOT_FROM_FORMAT"] = tests[0].path, "raw"
		p := preparePlan(t, env, false)
		prep := mustPrepare(t, p)
		defer prep.Release()
		spec, err := p.QEMUSpec(prep, FirstSettings(prep))
		if err != nil || spec.DiskBase != tests[0].path || spec.DiskBaseFormat != "raw" || len(prep.Base.Refs) != 0 {
			t.Errorf("base %s (%s), %+v, %v", spec.DiskBase, spec.DiskBaseFormat, prep.Base, err)
		}
		if o, err := image.Inspect(p.Paths.Disk); err != nil || o.BackingFormat != "raw" {
			t.Errorf("overlay %+v, %v", o, err)
		}
	})
}
