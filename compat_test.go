package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/netcfg"
	"github.com/vmrunner/vmrunner/qemu"
	"github.com/vmrunner/vmrunner/vm"
)

// otherBranch lists the seed project's variables (NAME, or NAME=value for
// one value) that another branch is adding, with its issue. Their rows in
// testdata/seed-variables.txt are skipped, and left out of the docker run
// lines, until the branch lands: then delete the entry here.
var otherBranch = map[string]int{}

// providedElsewhere names the issue whose branch provides NAME=value, or 0.
func providedElsewhere(name, value string) int {
	if n := otherBranch[name+"="+value]; n != 0 {
		return n
	}
	return otherBranch[name]
}

type seedRow struct {
	line                 int
	name, value, expect  string
	detail               string
	with                 map[string]string
	otherIssue           int
	otherVar, otherValue string
}

// compatFiles are the local files that stand in for the rows' $NAMEs.
type compatFiles struct{ dir, iso, img, zip, json, dev, userData string }

func makeCompatFiles(t *testing.T) compatFiles {
	t.Helper()
	dir := t.TempDir()
	f := compatFiles{dir: dir, iso: filepath.Join(dir, "install.iso"), img: filepath.Join(dir, "disk.raw"),
		zip: filepath.Join(dir, "disk.zip"), json: filepath.Join(dir, "catalog.json"), dev: filepath.Join(dir, "device.raw"), userData: filepath.Join(dir, "user-data")}
	var zipped bytes.Buffer
	zw := zip.NewWriter(&zipped)
	if w, err := zw.Create("disk.raw"); err != nil {
		t.Fatal(err)
	} else if _, err := w.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	iso := make([]byte, 0x9000)
	copy(iso[0x8001:], "CD001") // an ISO 9660 volume descriptor
	for path, data := range map[string][]byte{
		f.iso: iso, f.img: make([]byte, 1<<20), f.dev: make([]byte, 1<<20), f.zip: zipped.Bytes(),
		f.json: []byte(`{"meta": {"api_version": "v1"}, "images": [{"id": "golden-1", "name": "Golden", "category": "linux",
			"version": "1", "arch": "amd64", "status": "supported", "url": "https://images.example.com/golden-1.qcow2"}]}`),
		f.userData: []byte("#cloud-config\nruncmd: [echo compat-marker]\n"),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f compatFiles) expand(s string) string {
	return strings.NewReplacer("$DIR", f.dir, "$ISO", f.iso, "$IMG", f.img, "$ZIP", f.zip, "$JSON", f.json, "$DEV", f.dev, "$USERDATA", f.userData).Replace(s)
}

func readSeedRows(t *testing.T, f compatFiles) []seedRow {
	t.Helper()
	file, err := os.Open("testdata/seed-variables.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var rows []seedRow
	sc := bufio.NewScanner(file)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cols := strings.Split(line, "|")
		if len(cols) != 5 {
			t.Fatalf("seed-variables.txt:%d: want 5 columns separated by |, got %q", n, line)
		}
		for i := range cols {
			cols[i] = strings.TrimSpace(cols[i])
		}
		r := seedRow{line: n, name: cols[0], value: f.expand(cols[1]), expect: cols[3], detail: f.expand(cols[4]), with: map[string]string{}}
		if !slices.Contains([]string{"args", "seed", "config", "same", "refused"}, r.expect) {
			t.Fatalf("seed-variables.txt:%d: unknown expectation %q", n, r.expect)
		}
		if r.otherIssue = providedElsewhere(r.name, r.value); r.otherIssue != 0 {
			r.otherVar, r.otherValue = r.name, r.value
		}
		for _, kv := range strings.Fields(cols[2]) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("seed-variables.txt:%d: %q in the with column is not NAME=value", n, kv)
			}
			r.with[k] = f.expand(v)
			if i := providedElsewhere(k, v); i != 0 && r.otherIssue == 0 {
				r.otherIssue, r.otherVar, r.otherValue = i, k, v
			}
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// compatHost and compatFacts are a fixed machine: 16 GiB, 8 CPUs, 100 GiB
// free, KVM, swtpm, an Intel GPU's render node, the bridge br0 and the NICs eth0 and eth1.
func compatHost(dir string) config.Host {
	// PID1: the seed project's users run it as a container's entrypoint,
	// where its SHELL is theirs.
	return config.Host{Hostname: "testhost", HomeDir: dir, MemoryMiB: 16384, CPUs: 8, PID1: true,
		FreeBytes: func(string) (int64, error) { return 100 << 30, nil }}
}

func compatFacts() vm.Facts {
	return vm.Facts{KVMUsable: true, HostIPv6: true, DefaultMTU: 1500, Virtiofsd: "/usr/lib/qemu/virtiofsd", Swtpm: "/usr/bin/swtpm",
		RenderNodes:    []string{"/dev/dri/renderD128"},
		FirmwareExists: func(string) bool { return true },
		Links: map[string]netcfg.Link{
			"br0":  {Name: "br0", Kind: "bridge", MTU: 1500},
			"eth0": {Name: "eth0", Kind: "device", MTU: 1500},
			"eth1": {Name: "eth1", Kind: "device", MTU: 1500},
		}}
}

// compatRun is what vmrunner makes of env: the --dry-run command line,
// --show-config as NAME=value lines, and the seed's files; or the error.
type compatRun struct {
	args, show, seed string
}

func dryRun(env map[string]string, dir string) (compatRun, error) {
	cfg, err := config.Load(maps.Clone(env), compatHost(dir))
	if err != nil {
		return compatRun{}, err
	}
	facts := compatFacts()
	facts.BootImage, facts.BootImageErr = vm.InspectBootImage(cfg)
	facts.Catalog, facts.CatalogErr = vm.ReadCatalog(context.Background(), cfg, nil)
	plan, err := vm.MakePlan(cfg, facts)
	if err != nil {
		return compatRun{}, err
	}
	spec, _, err := plan.DryRunSpec()
	if err != nil {
		return compatRun{}, err
	}
	var r compatRun
	r.args = shellQuote(append([]string{plan.QEMUBinary}, qemu.Args(spec)...))
	var show []string
	for _, kv := range cfg.Effective() {
		show = append(show, kv[0]+"="+kv[1])
	}
	r.show = strings.Join(show, "\n")
	password := cfg.GuestPassword
	if password == "" {
		password = "made-up"
	}
	files, err := vm.SeedFor(cfg, password, "compatsalt").Files()
	if err != nil {
		return compatRun{}, err
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		r.seed += "== " + name + "\n" + string(files[name])
	}
	return r, nil
}

// TestSeedVariables proves, for every variable of the seed project, that
// vmrunner either honours it as the seed project documents or refuses it
// with exit 2 and advice: never ignores it.
func TestSeedVariables(t *testing.T) {
	f := makeCompatFiles(t)
	base := map[string]string{"DATA_DIR": filepath.Join(f.dir, "data")}
	rows := readSeedRows(t, f)
	if len(rows) < 100 {
		t.Fatalf("seed-variables.txt has %d rows; the seed project has more variables than that", len(rows))
	}
	for _, r := range rows {
		t.Run(fmt.Sprintf("%d:%s=%s", r.line, r.name, r.value), func(t *testing.T) {
			if r.otherIssue != 0 {
				t.Skipf("%s=%s is provided by another branch (issue %d)", r.otherVar, r.otherValue, r.otherIssue)
			}
			env := maps.Clone(base)
			maps.Copy(env, r.with)
			env[r.name] = r.value
			got, err := dryRun(env, f.dir)
			if r.expect == "refused" {
				checkRefused(t, r, err)
				return
			}
			delete(env, r.name)
			ref, refErr := dryRun(env, f.dir)
			if refErr != nil {
				t.Fatalf("the reference configuration %v fails: %v", env, refErr)
			}
			if err != nil {
				t.Fatalf("%s=%s refused: %v", r.name, r.value, err)
			}
			switch r.expect {
			case "args":
				checkChanged(t, r, "the QEMU command line", ref.args, got.args)
			case "seed":
				checkChanged(t, r, "the cloud-init seed", ref.seed, got.seed)
			case "config":
				checkChanged(t, r, "--show-config", ref.show, got.show)
			case "same":
				if got.args != ref.args {
					t.Errorf("%s=%s (%s) changed the command line:\n%s\nwas\n%s", r.name, r.value, r.detail, got.args, ref.args)
				}
			}
		})
	}
}

func checkChanged(t *testing.T, r seedRow, what, before, after string) {
	t.Helper()
	if before == after {
		t.Errorf("%s=%s does not change %s:\n%s", r.name, r.value, what, after)
	}
	want, absent := strings.CutPrefix(r.detail, "!")
	if strings.Contains(after, want) == absent {
		verb := "lacks"
		if absent {
			verb = "still has"
		}
		t.Errorf("with %s=%s, %s %s %q:\n%s", r.name, r.value, what, verb, want, after)
	}
}

func checkRefused(t *testing.T, r seedRow, err error) {
	t.Helper()
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("%s=%s: want a configuration error (exit 2), got %v", r.name, r.value, err)
	}
	if !strings.Contains(err.Error(), r.name+"=") || !strings.Contains(err.Error(), r.detail) {
		t.Errorf("%s=%s refused with %q: want it to name %s and say %q", r.name, r.value, err, r.name, r.detail)
	}
}

// dockerRunLines are the seed project's documented docker run lines (its
// reference and its networking guide), as the environment they set; a
// local file stands in for a URL where the command line should show it.
var dockerRunLines = []struct {
	name    string
	env     string
	want    []string // in the command line; or, with refused, in the exit-2 message
	refused bool
}{
	{"distro, memory, CPUs", "DISTRO=debian-12 MEMORY=8192 CPUS=4", []string{"-m 8192", "-smp 4", "virtio-blk-pci,drive=disk0"}, false},
	{"installer ISO by URL with noVNC", "BOOT_FROM=https://example.com/install.iso GRAPHICS=novnc", []string{"-m 4096", "drive=disk0"}, false},
	{"installer ISO, local stand-in, with noVNC", "BOOT_FROM=$ISO GRAPHICS=novnc", []string{"drive=cd0,id=cd0dev,bootindex=0", "drive=disk0,bootindex=1"}, false},
	{"persistent volume", "", []string{"/data/vms/testhost/disk.qcow2", "hostfwd=tcp:0.0.0.0:2222-:22"}, false},
	// $DIR stands in for the volume -v ./share:/share mounts.
	{"9p share", "FILESYSTEM_SOURCE=$DIR FILESYSTEM_DRIVER=9p", []string{"virtio-9p-pci", "-netdev user"}, false},
	{"secure boot", "BOOT_MODE=secure", []string{"-machine q35,smm=on", "property=secure,value=on"}, false},
	{"max, half, second disk", "MEMORY=max CPUS=half DISK2_SIZE=50G", []string{"-m 15872", "-smp 4", "drive=disk2"}, false},
	{"Windows installer", "BOOT_FROM=$ISO BOOT_MODE=uefi HYPERV=1 DISK_SIZE=64G MEMORY=8192 GRAPHICS=novnc",
		[]string{"hv_relaxed", "-m 8192", "drive=cd0,id=cd0dev,bootindex=0", "if=pflash"}, false},
	// vmrunner has no default BMC password: the line is refused, saying so.
	{"Redfish", "REDFISH_ENABLE=1", []string{"REDFISH_PASSWORD", "required with REDFISH_ENABLE=1"}, true},
	{"Redfish with a password", "REDFISH_ENABLE=1 REDFISH_PASSWORD=compat-secret", []string{"hostfwd=tcp:0.0.0.0:2222-:22"}, false},
	{"IPMI", "IPMI_ENABLE=1", []string{"IPMI_PASSWORD", "required with IPMI_ENABLE=1"}, true},
	{"IPMI with a password", "IPMI_ENABLE=1 IPMI_PASSWORD=compat-ipmi-secret", []string{"hostfwd=tcp:0.0.0.0:2222-:22"}, false},
	{"networking: quick start", "", []string{"-netdev user,id=net1", "hostfwd=tcp:0.0.0.0:2222-:22"}, false},
	{"networking: bridge", "NETWORK_MODE=bridge NETWORK_BRIDGE=br0", []string{"-netdev tap,id=net1,fd=3"}, false},
	{"networking: direct", "NETWORK_MODE=direct NETWORK_DIRECT_DEV=eth1", []string{"-netdev tap,id=net1,fd=3"}, false},
	// Its networking page's container mode (eth1 stands in for the container's interface).
	{"networking: container", "NETWORK_MODE=container NETWORK_CONTAINER_INTERFACE=eth1", []string{"-netdev tap,id=net1,fd=3"}, false},
	{"networking: nat subnet and network boot", "NETWORK_GUEST_IP=192.168.77.15 NETWORK_BOOT=1 IPXE_ENABLE=1",
		[]string{"dhcpstart=192.168.77.15", "hostfwd=tcp:0.0.0.0:2222-192.168.77.15:22", "bootindex=0,romfile=/usr/lib/ipxe/qemu/efi-virtio.rom"}, false},
}

// TestSeedDockerRunLines runs the seed project's documented docker run
// lines unchanged (DATA_DIR=/data as the image sets it) and checks the key
// parts of the command line. Variables another branch provides are left
// out until it lands, and said so.
func TestSeedDockerRunLines(t *testing.T) {
	f := makeCompatFiles(t)
	for _, line := range dockerRunLines {
		t.Run(line.name, func(t *testing.T) {
			env := map[string]string{"DATA_DIR": "/data"}
			for _, kv := range strings.Fields(f.expand(line.env)) {
				k, v, _ := strings.Cut(kv, "=")
				if issue := providedElsewhere(k, v); issue != 0 {
					t.Logf("left out %s=%s: provided by another branch (issue %d)", k, v, issue)
					continue
				}
				env[k] = v
			}
			got, err := dryRun(env, f.dir)
			if line.refused {
				var ce *config.Error
				if !errors.As(err, &ce) {
					t.Fatalf("%s: %v; want a configuration error (exit 2)", line.env, err)
				}
				for _, w := range line.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: refused with %q, which does not say %q", line.env, err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", line.env, err)
			}
			for _, w := range line.want {
				if !strings.Contains(got.args, w) {
					t.Errorf("%s: the command line lacks %q:\n%s", line.env, w, got.args)
				}
			}
		})
	}
}

// TestSeedFlags checks the seed project's command-line flags: each works
// or is refused with exit 2.
func TestSeedFlags(t *testing.T) {
	dir := t.TempDir()
	env := []string{"DATA_DIR=" + dir, "GUEST_NAME=compat", "ACCEL=tcg", "HOME=" + dir}
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"--version"}, 0},
		{[]string{"--show-config"}, 0},
		{[]string{"--no-console", "--show-config"}, 0},
		{[]string{"--dry-run", "--no-console"}, 0},
		{[]string{"--list-distros"}, 0},
		{[]string{"--list-distros", "--arch", "amd64", "--type", "cloud-image", "--search", "debian"}, 0},
		{[]string{"--list-distros", "--arch", "sparc"}, 2},
		{[]string{"--list-distros", "--search"}, 2},
		{[]string{"--cleanup"}, 0},
		{[]string{"--show-xml"}, 2},
		{[]string{"--no-such-flag"}, 2},
	}
	for _, tc := range tests {
		if got := run(tc.args, env); got != tc.want {
			t.Errorf("vmrunner %s: exit %d, want %d", strings.Join(tc.args, " "), got, tc.want)
		}
	}
	// --cleanup removes the VM's state folder.
	state := filepath.Join(dir, "vms", "compat")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "disk.qcow2"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := run([]string{"--cleanup"}, env); got != 0 {
		t.Errorf("--cleanup: exit %d", got)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--cleanup left %s: %v", state, err)
	}
}
