package vm

import (
	"errors"
	"flag"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/image"
	"github.com/vmrunner/vmrunner/netcfg"
	"github.com/vmrunner/vmrunner/qemu"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var testHost = config.Host{Hostname: "testhost", HomeDir: "/home/tester", MemoryMiB: 8192, CPUs: 8}

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// testFacts is a host with KVM, IPv6, a 1500 MTU default route, Debian's
// OVMF and swtpm, the bridge br0 and the NIC eth0, and no vhost-net nor
// render node.
func testFacts() Facts {
	return Facts{
		KVMUsable:  true,
		VhostNet:   false,
		HostIPv6:   true,
		DefaultMTU: 1500,
		FirmwareExists: existsIn(ovmfCode, ovmfVars,
			"/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"),
		Links: map[string]netcfg.Link{
			"br0":  {Name: "br0", Kind: "bridge", MTU: 1500},
			"eth0": {Name: "eth0", Kind: "device", MTU: 1500},
		},
		Swtpm: "/usr/bin/swtpm",
	}
}

func loadConfig(t testing.TB, env map[string]string) *config.Config {
	t.Helper()
	c, err := config.Load(maps.Clone(env), testHost)
	if err != nil {
		t.Fatalf("config.Load(%v): %v", env, err)
	}
	return c
}

// plan plans env on the host f; a local BOOT_FROM is inspected, as
// start-up's host probe does.
func plan(t testing.TB, env map[string]string, f Facts) *Plan {
	t.Helper()
	c := loadConfig(t, env)
	if f.BootImage == nil && f.BootImageErr == nil {
		f.BootImage, f.BootImageErr = InspectBootImage(c)
	}
	p, err := MakePlan(c, f)
	if err != nil {
		t.Fatalf("MakePlan(%v): %v", env, err)
	}
	return p
}

func mac(name string, index int) string { return netcfg.DeriveMAC(name, index).String() }

func TestMakePlanDefaultNAT(t *testing.T) {
	p := plan(t, map[string]string{"DATA_DIR": "/data", "BOOT_FROM": "blank"}, testFacts())
	st := "/data/vms/testhost"
	want := qemu.Spec{
		Name:      "testhost",
		Machine:   "q35",
		Accel:     "kvm",
		CPU:       "host",
		MemoryMiB: 4096,
		CPUs:      2,
		Sandbox:   true,
		Firmware:  &qemu.Firmware{Code: ovmfCode, Vars: st + "/efivars.fd"},
		Disk:      st + "/disk.qcow2",
		DiskBus:   "virtio",
		DiskCache: "none",
		DiskAIO:   "native",
		Seed:      st + "/seed.iso",
		NICs: []qemu.NIC{{
			ID: "net1", Model: "virtio-net-pci", MAC: mac("testhost", 1),
			Backend: qemu.UserNet{IPv6: true, Forwards: []qemu.Forward{{Proto: "tcp", HostAddr: "0.0.0.0", HostPort: 2222, GuestPort: 22}}},
			Boot:    true,
		}},
		QMPSockets: []string{st + "/qmp.sock", st + "/qmp-probe.sock"},
		GuestAgent: st + "/qga.sock",
	}
	if !reflect.DeepEqual(p.Spec, want) {
		t.Errorf("Spec:\n got %+v\nwant %+v", p.Spec, want)
	}
	wantPaths := Paths{
		State: st, Disk: st + "/disk.qcow2", Seed: st + "/seed.iso", Vars: st + "/efivars.fd",
		QMP: st + "/qmp.sock", QMPProbe: st + "/qmp-probe.sock", SerialLog: st + "/serial.log",
		Lock: st + "/lock", Salt: st + "/password-salt", UUID: st + "/uuid", Control: st + "/control.sock",
		VNCPassword: st + "/vnc-password", VNCDir: st + "/vnc", VNCSocket: st + "/vnc/web.sock",
		QGA: st + "/qga.sock",
	}
	if p.Paths != wantPaths {
		t.Errorf("Paths = %+v, want %+v", p.Paths, wantPaths)
	}
	if tmpl := p.Firmwares[config.BootUEFI].VarsTemplate; tmpl != ovmfVars || p.Base != nil || len(p.Warnings) != 0 {
		t.Errorf("vars template %q, Base %+v, Warnings %q", tmpl, p.Base, p.Warnings)
	}
	if len(p.NICs) != 1 || p.NICs[0].MAC.String() != mac("testhost", 1) || p.NICs[0].MTU != 0 || p.NICs[0].Vhost || p.NICs[0].Link != nil {
		t.Errorf("NICs = %+v", p.NICs)
	}
}

func TestMakePlanForwardsOnFirstNATOnly(t *testing.T) {
	p := plan(t, map[string]string{
		"BOOT_FROM": "blank", "SSH_PORT": "2200", "PORT_FWD": "8080:80,5353:53/udp", "PORT_FWD_ADDR": "127.0.0.1",
		"NETWORK_MODE": "bridge", "NETWORK2_MODE": "nat", "NETWORK3_MODE": "nat",
	}, testFacts())
	if len(p.Spec.NICs) != 3 {
		t.Fatalf("NICs = %+v", p.Spec.NICs)
	}
	want := []qemu.Forward{
		{Proto: "tcp", HostAddr: "127.0.0.1", HostPort: 2200, GuestPort: 22},
		{Proto: "tcp", HostAddr: "127.0.0.1", HostPort: 8080, GuestPort: 80},
		{Proto: "udp", HostAddr: "127.0.0.1", HostPort: 5353, GuestPort: 53},
	}
	if u, ok := p.Spec.NICs[1].Backend.(qemu.UserNet); !ok || !reflect.DeepEqual(u.Forwards, want) {
		t.Errorf("first nat NIC (2) backend %+v, want forwards %+v", p.Spec.NICs[1].Backend, want)
	}
	if u, ok := p.Spec.NICs[2].Backend.(qemu.UserNet); !ok || len(u.Forwards) != 0 {
		t.Errorf("second nat NIC (3) backend %+v, want no forwards", p.Spec.NICs[2].Backend)
	}
	if _, ok := p.Spec.NICs[0].Backend.(qemu.TapNet); !ok {
		t.Errorf("bridge NIC backend %+v", p.Spec.NICs[0].Backend)
	}
}

func TestMakePlanTapFDs(t *testing.T) {
	env := map[string]string{
		"BOOT_FROM": "blank", "NETWORK2_MODE": "bridge", "NETWORK3_MODE": "nat", "NETWORK4_MODE": "direct", "NETWORK5_MODE": "bridge",
	}
	tests := []struct {
		vhost bool
		want  map[string]qemu.TapNet // by netdev id
	}{
		{false, map[string]qemu.TapNet{
			"net2": {FD: 3, VhostFD: -1}, "net4": {FD: 4, VhostFD: -1}, "net5": {FD: 5, VhostFD: -1}}},
		{true, map[string]qemu.TapNet{
			"net2": {FD: 3, VhostFD: 4}, "net4": {FD: 5, VhostFD: 6}, "net5": {FD: 7, VhostFD: 8}}},
	}
	for _, tc := range tests {
		f := testFacts()
		f.VhostNet = tc.vhost
		p := plan(t, env, f)
		spec, _, err := p.DryRunSpec()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]qemu.TapNet{}
		for _, n := range spec.NICs {
			if tap, ok := n.Backend.(qemu.TapNet); ok {
				got[n.ID] = tap
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("vhost %v: taps %+v, want %+v", tc.vhost, got, tc.want)
		}
		for i, np := range p.NICs {
			isTap := np.Mode == config.NetBridge || np.Mode == config.NetDirect
			if isTap != (np.Link != nil) || np.Vhost != (isTap && tc.vhost) {
				t.Errorf("NIC %d (%s): Vhost %v, Link %+v", np.Index, np.Mode, np.Vhost, np.Link)
				continue
			}
			// Before start-up, the plan names the tap; it has no fd yet.
			if isTap && p.Spec.NICs[i].Backend != (qemu.TapNet{FD: -1, Ifname: np.Link.Name, VhostFD: -1}) {
				t.Errorf("NIC %d plan backend %+v", np.Index, p.Spec.NICs[i].Backend)
			}
		}
	}
}

func TestMakePlanMACs(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		kept map[int]string
		want []string
	}{
		{"derived", map[string]string{"NETWORK2_MODE": "nat"}, nil, []string{mac("testhost", 1), mac("testhost", 2)}},
		{"kept wins over derived", map[string]string{"NETWORK2_MODE": "nat"}, map[int]string{2: "52:54:00:11:22:33\n"},
			[]string{mac("testhost", 1), "52:54:00:11:22:33"}},
		{"configured wins over kept", map[string]string{"NETWORK_MAC": "02:00:00:00:00:01"}, map[int]string{1: "52:54:00:11:22:33"},
			[]string{"02:00:00:00:00:01"}},
		{"empty kept file", map[string]string{}, map[int]string{1: "\n"}, []string{mac("testhost", 1)}},
		{"by GUEST_NAME", map[string]string{"GUEST_NAME": "other"}, nil, []string{mac("other", 1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := maps.Clone(tc.env)
			env["BOOT_FROM"] = "blank"
			f := testFacts()
			f.KeptMACs = tc.kept
			p := plan(t, env, f)
			var got []string
			for i, n := range p.Spec.NICs {
				got = append(got, n.MAC)
				if p.NICs[i].MAC.String() != n.MAC {
					t.Errorf("plan MAC %v, spec MAC %s", p.NICs[i].MAC, n.MAC)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("MACs %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("bad kept MAC", func(t *testing.T) {
		f := testFacts()
		f.KeptMACs = map[int]string{1: "garbage"}
		_, err := MakePlan(loadConfig(t, map[string]string{"BOOT_FROM": "blank"}), f)
		if err == nil || !strings.Contains(err.Error(), "mac-1") {
			t.Errorf("error %v, want one naming mac-1", err)
		}
	})
}

func TestMakePlanErrors(t *testing.T) {
	dir := t.TempDir()
	badUserData, badNetConfig := filepath.Join(dir, "user-data"), filepath.Join(dir, "network-config")
	if err := os.WriteFile(badUserData, []byte("write_files:\n  - path: /etc/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badNetConfig, []byte("ethernets:\n  eth0:\n    dhcp4: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noKVM := testFacts()
	noKVM.KVMUsable, noKVM.KVMWhy = false, "/dev/kvm cannot be opened read-write"
	noFirmware := testFacts()
	noFirmware.FirmwareExists = existsIn()
	noLinks := testFacts()
	noLinks.Links = nil
	tests := []struct {
		name           string
		env            map[string]string
		facts          Facts
		varName, value string
		msg            string
	}{
		{"kvm without KVM", map[string]string{"BOOT_FROM": "blank", "ACCEL": "kvm"}, noKVM, "ACCEL", "kvm", "KVM is not usable: /dev/kvm cannot be opened read-write"},
		{"REQUIRE_KVM without KVM", map[string]string{"BOOT_FROM": "blank", "REQUIRE_KVM": "yes"}, noKVM, "ACCEL", "auto", "KVM is not usable: /dev/kvm cannot be opened read-write"},
		{"no firmware", map[string]string{"BOOT_FROM": "blank"}, noFirmware, "BOOT_MODE", "uefi", "no UEFI firmware"},
		{"no secure firmware", map[string]string{"BOOT_FROM": "blank", "BOOT_MODE": "secure"}, func() Facts {
			f := testFacts()
			f.FirmwareExists = existsIn(ovmfCode, ovmfVars)
			return f
		}(), "BOOT_MODE", "secure", "no UEFI firmware"},
		{"missing bridge", map[string]string{"BOOT_FROM": "blank", "NETWORK2_MODE": "bridge", "NETWORK2_BRIDGE": "br9"}, testFacts(), "NETWORK2_BRIDGE", "br9", "br9"},
		{"missing parent NIC", map[string]string{"BOOT_FROM": "blank", "NETWORK3_MODE": "direct"}, noLinks, "NETWORK3_DIRECT_DEV", "eth0", "eth0"},
		{"ide beyond the pc machine's 4 disks", map[string]string{"BOOT_FROM": "blank", "DISK_TYPE": "ide", "MACHINE": "pc",
			"DISK2_SIZE": "1G", "DISK3_SIZE": "1G", "DISK4_SIZE": "1G", "DISK5_SIZE": "1G"}, testFacts(), "DISK_TYPE", "ide", "takes 4 IDE disks"},
		{"bridge that is no bridge", map[string]string{"BOOT_FROM": "blank", "NETWORK_MODE": "bridge", "NETWORK_BRIDGE": "eth0"}, testFacts(), "NETWORK_BRIDGE", "eth0", "not a Linux bridge"},
		{"missing container interface", map[string]string{"BOOT_FROM": "blank", "NETWORK2_MODE": "container", "NETWORK2_CONTAINER_INTERFACE": "net1"}, testFacts(),
			"NETWORK2_CONTAINER_INTERFACE", "net1", "docker network connect"},
		{"no iPXE ROM", map[string]string{"BOOT_FROM": "blank", "IPXE_ENABLE": "1"}, testFacts(), "IPXE_ENABLE", "1", "ipxe-qemu"},
		{"unknown distro", map[string]string{"DISTRO": "ubunt-2404"}, testFacts(), "DISTRO", "ubunt-2404", "did you mean ubuntu-2404"},
		{"distro without the firmware", map[string]string{"DISTRO": "alpine", "BOOT_MODE": "legacy"}, testFacts(), "BOOT_MODE", "legacy", "alpine boots with"},
		{"unreadable catalog", map[string]string{"DISTRO": "debian-12", "CATALOG": "/no/such/catalog.yaml"}, func() Facts {
			f := testFacts()
			f.CatalogErr = os.ErrNotExist
			return f
		}(), "CATALOG", "/no/such/catalog.yaml", "readable catalog"},
		{"user-data of no format", map[string]string{"BOOT_FROM": "blank", "CLOUD_INIT_USER_DATA": badUserData}, testFacts(),
			"CLOUD_INIT_USER_DATA", badUserData, "#cloud-config"},
		{"network-config without version", map[string]string{"BOOT_FROM": "blank", "CLOUD_INIT_NETWORK_CONFIG": badNetConfig}, testFacts(),
			"CLOUD_INIT_NETWORK_CONFIG", badNetConfig, "no version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := MakePlan(loadConfig(t, tc.env), tc.facts)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("MakePlan = %+v, %v; want a *config.Error", p, err)
			}
			if ce.Var != tc.varName || ce.Value != tc.value || ce.Accepted == "" {
				t.Errorf("error %+v, want Var %s Value %q", ce, tc.varName, tc.value)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
		})
	}
}

func TestMakePlanSocketPathLength(t *testing.T) {
	// DATA_DIR + "/vms/vm/qmp-probe.sock", the longest socket without
	// shares, must fit sun_path's 107 bytes.
	overhead := len("/vms/vm/qmp-probe.sock")
	fits := "/" + strings.Repeat("d", maxSocketPath-overhead-1)
	tooLong := fits + "d"
	env := map[string]string{"BOOT_FROM": "blank", "GUEST_NAME": "vm"}

	env["DATA_DIR"] = fits
	p := plan(t, env, testFacts())
	if len(p.Paths.QMPProbe) != maxSocketPath {
		t.Fatalf("QMPProbe %d bytes, want exactly %d", len(p.Paths.QMPProbe), maxSocketPath)
	}

	env["DATA_DIR"] = tooLong
	_, err := MakePlan(loadConfig(t, env), testFacts())
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "DATA_DIR" || ce.Value != tooLong || !strings.Contains(ce.Accepted, "short enough for unix sockets") {
		t.Errorf("error %v, want a DATA_DIR *config.Error", err)
	}
}

func TestMakePlanBootFrom(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "base.img")
	if err := os.WriteFile(img, []byte("raw"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, from := range []string{img, "base.img", "./base.img"} {
		p := plan(t, map[string]string{"BOOT_FROM": from, "DATA_DIR": "/data"}, testFacts())
		if p.Base == nil || p.Base.Path != img || p.Base.Info.Format != "raw" || p.Base.CDROM != "" {
			t.Errorf("BOOT_FROM=%s: Base %+v, want %q as raw", from, p.Base, img)
		}
		if p.Spec.Disk != "/data/vms/testhost/disk.qcow2" {
			t.Errorf("BOOT_FROM=%s: Disk %q", from, p.Spec.Disk)
		}
	}
	// Kernel boot without a disk.
	p := plan(t, map[string]string{"KERNEL": img, "BOOT_MODE": "legacy", "CLOUD_INIT": "0"}, testFacts())
	if p.Spec.Disk != "" || p.Spec.Seed != "" || p.Spec.Firmware != nil || p.Base != nil || p.Spec.Kernel != img {
		t.Errorf("kernel boot plan: %+v / %+v", p, p.Spec)
	}
}

func TestMakePlanDownload(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name string
		env  map[string]string
		want func(d *image.FetchRequest) bool
	}{
		{"the default distro", map[string]string{}, func(d *image.FetchRequest) bool {
			return strings.Contains(d.URL, "24.04") && d.ChecksumURL != "" && d.Attempts == 6
		}},
		{"a distro by alias, retries", map[string]string{"DISTRO": "debian-12-cloud-amd64", "DOWNLOAD_RETRIES": "2"}, func(d *image.FetchRequest) bool {
			return strings.Contains(d.URL, "debian-12-genericcloud") && d.Attempts == 3
		}},
		{"a URL with its digest and caps", map[string]string{"BOOT_FROM": "http://example.com/x.img", "BOOT_FROM_SHA256": sum,
			"DOWNLOAD_MAX_SIZE": "1G", "EXTRACT_MAX_SIZE": "2G"}, func(d *image.FetchRequest) bool {
			return d.URL == "http://example.com/x.img" && d.SHA256 == sum && d.ChecksumURL == "" && d.MaxSize == 1<<30 && d.MaxUnpacked == 2<<30
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := plan(t, tc.env, testFacts())
			if d := p.Download; d == nil || d.CacheDir != "/home/tester/.local/state/vmrunner/cache" || p.Spec.Disk == "" || p.Base != nil || !tc.want(d) {
				t.Errorf("download %+v, disk %q, base %+v", d, p.Spec.Disk, p.Base)
			}
		})
	}
	if p := plan(t, map[string]string{"BOOT_FROM": "blank"}, testFacts()); p.Download != nil {
		t.Errorf("BOOT_FROM=blank downloads %+v", p.Download)
	}
}

func TestMakePlanTCGWarning(t *testing.T) {
	f := testFacts()
	f.KVMUsable = false
	p := plan(t, map[string]string{"BOOT_FROM": "blank"}, f)
	if p.Spec.Accel != "tcg" || p.Spec.CPU != "max" {
		t.Errorf("accel %q cpu %q, want tcg max", p.Spec.Accel, p.Spec.CPU)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "TCG") {
		t.Errorf("warnings %q", p.Warnings)
	}
}

func TestMakePlanDiskCacheAndPersist(t *testing.T) {
	f := testFacts()
	f.NoDirectIO = true
	p := plan(t, map[string]string{"BOOT_FROM": "blank"}, f)
	if p.Spec.DiskCache != "writeback" || p.Spec.DiskAIO != "threads" || len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "O_DIRECT") {
		t.Errorf("without O_DIRECT: cache %s aio %s, warnings %q", p.Spec.DiskCache, p.Spec.DiskAIO, p.Warnings)
	}
	// No disk, nothing to warn about.
	p = plan(t, map[string]string{"KERNEL": "/dev/null", "BOOT_MODE": "legacy"}, f)
	if len(p.Warnings) != 0 {
		t.Errorf("kernel boot without disks: warnings %q", p.Warnings)
	}
	for _, tc := range []struct {
		persist string
		mounted bool
		want    bool
	}{{"", false, false}, {"", true, true}, {"1", false, true}, {"0", true, false}} {
		f := testFacts()
		f.DataDirMounted = tc.mounted
		if p := plan(t, map[string]string{"BOOT_FROM": "blank", "PERSIST": tc.persist}, f); p.Persist != tc.want {
			t.Errorf("PERSIST=%q, DATA_DIR mounted %v: Persist %v, want %v", tc.persist, tc.mounted, p.Persist, tc.want)
		}
	}
}

func TestMakePlanTouchesNothing(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	plan(t, map[string]string{"DATA_DIR": data, "BOOT_FROM": "blank", "NETWORK2_MODE": "bridge"}, testFacts())
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("MakePlan created %s (%v)", data, err)
	}
}

// --- the complete command line -------------------------------------------

// baseEnv is the configuration the per-variable table starts from.
var baseEnv = map[string]string{"DATA_DIR": "/data", "GUEST_NAME": "web", "BOOT_FROM": "blank"}

// argv is the command line --dry-run prints.
func argv(t testing.TB, env map[string]string, f Facts) []string {
	t.Helper()
	spec, _, err := plan(t, env, f).DryRunSpec()
	if err != nil {
		t.Fatal(err)
	}
	return qemu.Args(spec)
}

func checkGolden(t *testing.T, name string, args []string) {
	t.Helper()
	got := strings.Join(args, "\n") + "\n"
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./vm/ -update creates it)", err)
	}
	if got != string(want) {
		removed, added := diffArgs(strings.Split(strings.TrimSuffix(string(want), "\n"), "\n"), args)
		t.Errorf("command line differs from %s (go test ./vm/ -update rewrites it)\nremoved: %q\nadded:   %q", path, removed, added)
	}
}

// TestArgvGolden pins the full command line of the base configuration
// and of a typical, busier one.
func TestArgvGolden(t *testing.T) {
	t.Run("base", func(t *testing.T) {
		checkGolden(t, "base", argv(t, baseEnv, testFacts()))
	})
	t.Run("typical", func(t *testing.T) {
		f := testFacts()
		f.VhostNet = true
		f.DefaultMTU = 1450
		checkGolden(t, "typical", argv(t, typicalEnv, f))
	})
	t.Run("disks", func(t *testing.T) {
		env := maps.Clone(baseEnv)
		maps.Copy(env, map[string]string{"DISK_TYPE": "scsi", "DISK2_SIZE": "8G", "DISK3_SIZE": "1T", "DISK_CACHE": "writeback", "DISK_IO": "io_uring"})
		checkGolden(t, "disks", argv(t, env, testFacts()))
	})
}

var typicalEnv = map[string]string{
	"DATA_DIR":       "/data",
	"GUEST_NAME":     "web",
	"BOOT_FROM":      "blank",
	"MEMORY":         "2G",
	"CPUS":           "half",
	"DISK_SIZE":      "40G",
	"PORT_FWD":       "8080:80,8443:443,5353:53/udp",
	"NETWORK2_MODE":  "bridge",
	"NETWORK3_MODE":  "nat",
	"NETWORK3_MODEL": "e1000",
	"GRAPHICS":       "vnc",
	"VNC_PORT":       "5901",
	"SSH_PUBKEY":     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHt0ZXN0 me@host",
	"GUEST_PASSWORD": "s3cret",
	"EXTRA_ARGS":     "-device virtio-balloon-pci -no-reboot",
}

// group pairs each option with its value ("-m 4096"), so that a diff
// names whole options.
func group(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if strings.HasPrefix(args[i], "-") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			out = append(out, args[i]+" "+args[i+1])
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// diffArgs returns the grouped options only in a (removed) and only in b
// (added), counting repeats.
func diffArgs(a, b []string) (removed, added []string) {
	count := map[string]int{}
	for _, s := range group(a) {
		count[s]++
	}
	for _, s := range group(b) {
		if count[s] > 0 {
			count[s]--
			continue
		}
		added = append(added, s)
	}
	for _, s := range group(a) {
		if count[s] > 0 {
			count[s]--
			removed = append(removed, s)
		}
	}
	return removed, added
}

// TestArgvPerVariable sets one variable (or fact) at a time on baseEnv and
// checks exactly which options change.
func TestArgvPerVariable(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#cloud-config\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kernel, initrd, img, userData := file("vmlinuz"), file("initrd.img"), file("base.img"), file("user-data")
	dev, dev3 := file("dev.img"), file("dev3.img")
	m1, m2 := mac("web", 1), mac("web", 2)
	nat1 := "-netdev user,id=net1,ipv4=on,ipv6=on,hostfwd=tcp:0.0.0.0:2222-:22"
	dev1 := "-device virtio-net-pci,netdev=net1,mac=" + m1
	st := "/data/vms/web"
	vncpw, vncsock := st+"/vnc-password", st+"/vnc/web.sock"
	codeDrive := "-drive if=pflash,format=raw,unit=0,readonly=on,file=" + ovmfCode
	varsDrive := "-drive if=pflash,format=raw,unit=1,file=" + st + "/efivars.fd"
	diskDrive := "-drive file=" + st + "/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,cache=none,aio=native"
	diskDevice := "-device virtio-blk-pci,drive=disk0,bootindex=1"
	cdDevice := "-device scsi-cd,bus=scsi0.0,drive=cd0,id=cd0dev"
	seed := []string{"-device virtio-scsi-pci,id=scsi0", "-drive file=" + st + "/seed.iso,if=none,id=cidata,media=cdrom,readonly=on,format=raw", "-device scsi-cd,bus=scsi0.0,drive=cidata"}
	qmp := []string{"-qmp unix:" + st + "/qmp.sock,server=on,wait=off", "-qmp unix:" + st + "/qmp-probe.sock,server=on,wait=off"}
	qga := "-chardev socket,id=qga0,path=" + st + "/qga.sock,server=on,wait=off"
	tpm := []string{"-chardev socket,id=chrtpm,path=" + st + "/tpm.sock", "-tpmdev emulator,id=tpm0,chardev=chrtpm", "-device tpm-tis,tpmdev=tpm0"}

	type facts func(*Facts)
	tests := []struct {
		name    string
		env     map[string]string
		facts   facts
		removed []string
		added   []string
	}{
		{"MEMORY=2G", map[string]string{"MEMORY": "2G"}, nil, []string{"-m 4096"}, []string{"-m 2048"}},
		{"MEMORY=1536", map[string]string{"MEMORY": "1536"}, nil, []string{"-m 4096"}, []string{"-m 1536"}},
		{"MEMORY=max", map[string]string{"MEMORY": "max"}, nil, []string{"-m 4096"}, []string{"-m 7680"}}, // less 512 MiB for QEMU
		{"CPUS=4", map[string]string{"CPUS": "4"}, nil, []string{"-smp 2"}, []string{"-smp 4"}},
		{"CPUS=max", map[string]string{"CPUS": "max"}, nil, []string{"-smp 2"}, []string{"-smp 8"}},
		{"CPU_MODEL=EPYC", map[string]string{"CPU_MODEL": "EPYC"}, nil, []string{"-cpu host"}, []string{"-cpu EPYC"}},
		{"MACHINE=pc", map[string]string{"MACHINE": "pc"}, nil, []string{"-machine q35"}, []string{"-machine pc"}},
		{"ACCEL=tcg", map[string]string{"ACCEL": "tcg"}, nil, []string{"-accel kvm", "-cpu host"}, []string{"-accel tcg", "-cpu max"}},
		{"ACCEL=tcg CPU_MODEL=Haswell", map[string]string{"ACCEL": "tcg", "CPU_MODEL": "Haswell"}, nil, []string{"-accel kvm", "-cpu host"}, []string{"-accel tcg", "-cpu Haswell"}},
		{"ACCEL=auto without KVM", nil, func(f *Facts) { f.KVMUsable = false }, []string{"-accel kvm", "-cpu host"}, []string{"-accel tcg", "-cpu max"}},
		{"ACCEL=kvm", map[string]string{"ACCEL": "kvm"}, nil, nil, nil},
		{"REQUIRE_KVM=1", map[string]string{"REQUIRE_KVM": "1"}, nil, nil, nil},
		{"BOOT_MODE=legacy", map[string]string{"BOOT_MODE": "legacy"}, nil, []string{codeDrive, varsDrive}, nil},
		{"BOOT_MODE=secure", map[string]string{"BOOT_MODE": "secure"}, nil,
			[]string{"-machine q35", codeDrive},
			append([]string{"-machine q35,smm=on", "-global driver=cfi.pflash01,property=secure,value=on",
				"-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"}, tpm...)},
		{"BOOT_MODE=secure TPM=0", map[string]string{"BOOT_MODE": "secure", "TPM": "0"}, nil,
			[]string{"-machine q35", codeDrive},
			[]string{"-machine q35,smm=on", "-global driver=cfi.pflash01,property=secure,value=on",
				"-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"}},
		{"BOOT_MODE=secure without swtpm", map[string]string{"BOOT_MODE": "secure"}, func(f *Facts) { f.Swtpm = "" },
			[]string{"-machine q35", codeDrive},
			[]string{"-machine q35,smm=on", "-global driver=cfi.pflash01,property=secure,value=on",
				"-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"}},
		{"TPM=1", map[string]string{"TPM": "1"}, nil, nil, tpm},
		{"TPM=auto", map[string]string{"TPM": "auto"}, nil, nil, nil},
		{"TPM=0", map[string]string{"TPM": "0"}, nil, nil, nil},
		{"GPU=intel", map[string]string{"GPU": "intel"}, func(f *Facts) { f.RenderNodes = []string{"/dev/dri/renderD129", "/dev/dri/renderD130"} },
			[]string{"-display none"}, []string{"-display egl-headless,rendernode=/dev/dri/renderD129", "-device virtio-vga-gl,id=video0"}},
		{"GPU=intel GPU_RENDER_NODE", map[string]string{"GPU": "intel", "GPU_RENDER_NODE": "/dev/null"}, nil,
			[]string{"-display none"}, []string{"-display egl-headless,rendernode=/dev/null", "-device virtio-vga-gl,id=video0"}},
		{"GPU=intel GRAPHICS=vnc", map[string]string{"GPU": "intel", "GRAPHICS": "vnc"}, func(f *Facts) { f.RenderNodes = []string{"/dev/dri/renderD128"} },
			[]string{"-display none"}, []string{"-display egl-headless,rendernode=/dev/dri/renderD128", "-device virtio-vga-gl,id=video0", "-device qemu-xhci,id=usb", "-device usb-tablet,bus=usb.0", "-object secret,id=vncpass,format=raw,file=" + vncpw, "-vnc 0.0.0.0:0,id=vnc0,password-secret=vncpass", "-vnc unix:" + vncsock + ",id=web"}},
		{"DISK_TYPE=usb", map[string]string{"DISK_TYPE": "usb"}, nil, []string{diskDevice}, []string{"-device qemu-xhci,id=usb,p2=15", "-device usb-storage,bus=usb.0,drive=disk0,bootindex=1"}},
		{"DISK_TYPE=usb USB=1", map[string]string{"DISK_TYPE": "usb", "USB": "1"}, nil, []string{diskDevice},
			[]string{"-device qemu-xhci,id=usb,p2=15", "-device usb-storage,bus=usb.0,drive=disk0,bootindex=1", "-device usb-tablet,bus=usb.0"}},
		{"DISK_TYPE=usb GRAPHICS=novnc", map[string]string{"DISK_TYPE": "usb", "GRAPHICS": "novnc"}, nil, []string{diskDevice},
			[]string{"-device qemu-xhci,id=usb,p2=15", "-device usb-storage,bus=usb.0,drive=disk0,bootindex=1", "-device VGA,id=video0", "-device usb-tablet,bus=usb.0", "-vnc unix:" + vncsock + ",id=web"}},
		{"KERNEL INITRD KERNEL_CMDLINE", map[string]string{"KERNEL": kernel, "INITRD": initrd, "KERNEL_CMDLINE": "console=ttyS0 root=/dev/vda1"}, nil,
			nil, []string{"-kernel " + kernel, "-initrd " + initrd, "-append console=ttyS0 root=/dev/vda1"}},
		{"KERNEL without a disk", map[string]string{"KERNEL": kernel, "BOOT_FROM": ""}, nil,
			[]string{diskDrive, diskDevice}, []string{"-kernel " + kernel}},
		// --dry-run shows the base QEMU opens, on its own node.
		{"BOOT_FROM=file", map[string]string{"BOOT_FROM": img}, nil, []string{diskDrive}, []string{
			`-blockdev {"driver":"raw","node-name":"disk0-base","read-only":true,"file":{"driver":"file","filename":"` + img + `","aio":"native","cache":{"direct":true}}}`,
			diskDrive + ",backing=disk0-base"}},
		{"DISTRO with BOOT_FROM", map[string]string{"DISTRO": "debian-12"}, nil, nil, nil},
		{"DISK_SIZE=40G", map[string]string{"DISK_SIZE": "40G"}, nil, nil, nil},
		{"DISK2_SIZE DISK5_SIZE", map[string]string{"DISK2_SIZE": "1G", "DISK5_SIZE": "2G"}, nil, nil, []string{
			"-drive file=" + st + "/disk2.qcow2,if=none,id=disk2,format=qcow2,discard=unmap,cache=none,aio=native", "-device virtio-blk-pci,drive=disk2",
			"-drive file=" + st + "/disk5.qcow2,if=none,id=disk5,format=qcow2,discard=unmap,cache=none,aio=native", "-device virtio-blk-pci,drive=disk5"}},
		{"DEVICE DEVICE3 after DISK2_SIZE", map[string]string{"DEVICE3": dev3, "DEVICE": dev, "DISK2_SIZE": "1G"}, nil, nil, []string{
			"-drive file=" + st + "/disk2.qcow2,if=none,id=disk2,format=qcow2,discard=unmap,cache=none,aio=native", "-device virtio-blk-pci,drive=disk2",
			"-drive file=" + dev + ",if=none,id=dev1,format=raw,discard=unmap,cache=none,aio=native", "-device virtio-blk-pci,drive=dev1",
			"-drive file=" + dev3 + ",if=none,id=dev3,format=raw,discard=unmap,cache=none,aio=native", "-device virtio-blk-pci,drive=dev3"}},
		{"DISK_TYPE=scsi", map[string]string{"DISK_TYPE": "scsi"}, nil, []string{diskDevice}, []string{"-device scsi-hd,bus=scsi0.0,drive=disk0,bootindex=1"}},
		{"DISK_TYPE=scsi CLOUD_INIT=0", map[string]string{"DISK_TYPE": "scsi", "CLOUD_INIT": "0"}, nil, []string{diskDevice, seed[1], seed[2]},
			[]string{"-device scsi-hd,bus=scsi0.0,drive=disk0,bootindex=1"}},
		{"DISK_TYPE=nvme", map[string]string{"DISK_TYPE": "nvme"}, nil, []string{diskDevice}, []string{"-device nvme,serial=disk0,drive=disk0,bootindex=1"}},
		{"DISK_TYPE=ide", map[string]string{"DISK_TYPE": "ide"}, nil, []string{diskDevice}, []string{"-device ide-hd,bus=ide.0,drive=disk0,bootindex=1"}},
		{"DISK_TYPE=ide MACHINE=pc", map[string]string{"DISK_TYPE": "ide", "MACHINE": "pc"}, nil, []string{diskDevice, "-machine q35"},
			[]string{"-device ide-hd,bus=ide.0,unit=0,drive=disk0,bootindex=1", "-machine pc"}},
		{"DISK_CACHE=writeback", map[string]string{"DISK_CACHE": "writeback"}, nil, []string{diskDrive},
			[]string{"-drive file=" + st + "/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,cache=writeback,aio=threads"}},
		{"DISK_CACHE=unsafe DISK_IO=io_uring", map[string]string{"DISK_CACHE": "unsafe", "DISK_IO": "io_uring"}, nil, []string{diskDrive},
			[]string{"-drive file=" + st + "/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,cache=unsafe,aio=io_uring"}},
		{"DISK_IO=threads", map[string]string{"DISK_IO": "threads"}, nil, []string{diskDrive},
			[]string{"-drive file=" + st + "/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,cache=none,aio=threads"}},
		{"state folder refuses O_DIRECT", nil, func(f *Facts) { f.NoDirectIO = true }, []string{diskDrive},
			[]string{"-drive file=" + st + "/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,cache=writeback,aio=threads"}},
		{"O_DIRECT refused with DISK_IO=io_uring", map[string]string{"DISK_IO": "io_uring"}, func(f *Facts) { f.NoDirectIO = true }, []string{diskDrive},
			[]string{"-drive file=" + st + "/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,cache=writeback,aio=io_uring"}},
		{"PERSIST=0", map[string]string{"PERSIST": "0"}, nil, nil, nil},
		{"DATA_DIR a mount point", nil, func(f *Facts) { f.DataDirMounted = true }, nil, nil},
		{"CLOUD_INIT=0", map[string]string{"CLOUD_INIT": "0"}, nil, seed[1:], nil}, // the CD drive keeps the controller,
		{"cloud-init content", map[string]string{"GUEST_USER": "ops", "GUEST_PASSWORD": "x", "SSH_PUBKEY": "ssh-ed25519 AAAA k", "CLOUD_INIT_USER_DATA": userData}, nil, nil, nil},
		{"GUEST_NAME=db", map[string]string{"GUEST_NAME": "db"}, nil,
			append([]string{"-name guest=web", varsDrive, diskDrive, seed[1], dev1, qga}, qmp...),
			append([]string{"-name guest=db",
				"-drive if=pflash,format=raw,unit=1,file=/data/vms/db/efivars.fd",
				"-drive file=/data/vms/db/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,cache=none,aio=native",
				"-drive file=/data/vms/db/seed.iso,if=none,id=cidata,media=cdrom,readonly=on,format=raw",
				"-device virtio-net-pci,netdev=net1,mac=" + mac("db", 1)},
				"-qmp unix:/data/vms/db/qmp.sock,server=on,wait=off", "-qmp unix:/data/vms/db/qmp-probe.sock,server=on,wait=off",
				"-chardev socket,id=qga0,path=/data/vms/db/qga.sock,server=on,wait=off")},
		{"DATA_DIR=/srv/vmr", map[string]string{"DATA_DIR": "/srv/vmr"}, nil,
			append([]string{varsDrive, diskDrive, seed[1], qga}, qmp...),
			[]string{
				"-drive if=pflash,format=raw,unit=1,file=/srv/vmr/vms/web/efivars.fd",
				"-drive file=/srv/vmr/vms/web/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,cache=none,aio=native",
				"-drive file=/srv/vmr/vms/web/seed.iso,if=none,id=cidata,media=cdrom,readonly=on,format=raw",
				"-qmp unix:/srv/vmr/vms/web/qmp.sock,server=on,wait=off", "-qmp unix:/srv/vmr/vms/web/qmp-probe.sock,server=on,wait=off",
				"-chardev socket,id=qga0,path=/srv/vmr/vms/web/qga.sock,server=on,wait=off"}},
		{"SHUTDOWN_TIMEOUT LOG_FORMAT LOG_VERBOSE QEMU_BINARY", map[string]string{"SHUTDOWN_TIMEOUT": "5", "LOG_FORMAT": "json", "LOG_VERBOSE": "1", "QEMU_BINARY": "/opt/qemu"}, nil, nil, nil},
		{"SSH_PORT=2200", map[string]string{"SSH_PORT": "2200"}, nil, []string{nat1}, []string{"-netdev user,id=net1,ipv4=on,ipv6=on,hostfwd=tcp:0.0.0.0:2200-:22"}},
		{"SSH_PORT=0", map[string]string{"SSH_PORT": "0"}, nil, []string{nat1}, []string{"-netdev user,id=net1,ipv4=on,ipv6=on"}},
		{"SSH_PORT=0 PORT_FWD", map[string]string{"SSH_PORT": "0", "PORT_FWD": "8080:80"}, nil, []string{nat1},
			[]string{"-netdev user,id=net1,ipv4=on,ipv6=on,hostfwd=tcp:0.0.0.0:8080-:80"}},
		{"PORT_FWD", map[string]string{"PORT_FWD": "8080:80,5353:53/udp"}, nil, []string{nat1},
			[]string{"-netdev user,id=net1,ipv4=on,ipv6=on,hostfwd=tcp:0.0.0.0:2222-:22,hostfwd=tcp:0.0.0.0:8080-:80,hostfwd=udp:0.0.0.0:5353-:53"}},
		{"PORT_FWD_ADDR=127.0.0.1", map[string]string{"PORT_FWD_ADDR": "127.0.0.1"}, nil, []string{nat1}, []string{"-netdev user,id=net1,ipv4=on,ipv6=on,hostfwd=tcp:127.0.0.1:2222-:22"}},
		{"host without IPv6", nil, func(f *Facts) { f.HostIPv6 = false }, []string{nat1}, []string{"-netdev user,id=net1,ipv4=on,ipv6=off,hostfwd=tcp:0.0.0.0:2222-:22"}},
		{"NETWORK_MODEL=e1000", map[string]string{"NETWORK_MODEL": "e1000"}, nil, []string{dev1}, []string{"-device e1000,netdev=net1,mac=" + m1}},
		{"NETWORK_MAC", map[string]string{"NETWORK_MAC": "52:54:00:AA:BB:CC"}, nil, []string{dev1}, []string{"-device virtio-net-pci,netdev=net1,mac=52:54:00:aa:bb:cc"}},
		{"kept MAC", nil, func(f *Facts) { f.KeptMACs = map[int]string{1: "52:54:00:aa:bb:cd\n"} }, []string{dev1}, []string{"-device virtio-net-pci,netdev=net1,mac=52:54:00:aa:bb:cd"}},
		{"NETWORK_MTU=1400", map[string]string{"NETWORK_MTU": "1400"}, nil, []string{dev1}, []string{dev1 + ",host_mtu=1400"}},
		{"NETWORK_MTU=1400 on e1000", map[string]string{"NETWORK_MTU": "1400", "NETWORK_MODEL": "e1000"}, nil, []string{dev1}, []string{"-device e1000,netdev=net1,mac=" + m1}},
		{"detected MTU 1450", nil, func(f *Facts) { f.DefaultMTU = 1450 }, []string{dev1}, []string{dev1 + ",host_mtu=1450"}},
		{"NETWORK_MTU=1500 beats detected 1450", map[string]string{"NETWORK_MTU": "1500"}, func(f *Facts) { f.DefaultMTU = 1450 }, []string{dev1}, []string{dev1 + ",host_mtu=1500"}},
		{"NETWORK_MODE=none", map[string]string{"NETWORK_MODE": "none"}, nil, []string{nat1, dev1}, nil},
		{"NETWORK_MODE=bridge", map[string]string{"NETWORK_MODE": "bridge"}, nil, []string{nat1}, []string{"-netdev tap,id=net1,fd=3"}},
		{"NETWORK_MODE=direct with vhost-net", map[string]string{"NETWORK_MODE": "direct"}, func(f *Facts) { f.VhostNet = true }, []string{nat1}, []string{"-netdev tap,id=net1,fd=3,vhost=on,vhostfd=4"}},
		{"NETWORK_BRIDGE on a nat NIC", map[string]string{"NETWORK_BRIDGE": "br7", "NETWORK_DIRECT_DEV": "eth7"}, nil, nil, nil},
		{"NETWORK2_MODE=nat", map[string]string{"NETWORK2_MODE": "nat"}, nil, nil,
			[]string{"-netdev user,id=net2,ipv4=on,ipv6=on", "-device virtio-net-pci,netdev=net2,mac=" + m2}},
		{"NETWORK2_MODE=bridge", map[string]string{"NETWORK2_MODE": "bridge"}, func(f *Facts) { f.VhostNet = true }, nil,
			[]string{"-netdev tap,id=net2,fd=3,vhost=on,vhostfd=4", "-device virtio-net-pci,netdev=net2,mac=" + m2}},
		{"NETWORK2_MTU", map[string]string{"NETWORK2_MODE": "nat", "NETWORK2_MTU": "9000", "NETWORK2_MODEL": "virtio"}, func(f *Facts) { f.DefaultMTU = 1450 }, []string{dev1},
			[]string{dev1 + ",host_mtu=1450", "-netdev user,id=net2,ipv4=on,ipv6=on", "-device virtio-net-pci,netdev=net2,mac=" + m2 + ",host_mtu=9000"}},
		{"GRAPHICS=vnc", map[string]string{"GRAPHICS": "vnc"}, nil, nil, []string{"-device VGA,id=video0", "-device qemu-xhci,id=usb", "-device usb-tablet,bus=usb.0", "-object secret,id=vncpass,format=raw,file=" + vncpw, "-vnc 0.0.0.0:0,id=vnc0,password-secret=vncpass", "-vnc unix:" + vncsock + ",id=web"}},
		{"GRAPHICS=vnc VNC_PORT=5905", map[string]string{"GRAPHICS": "vnc", "VNC_PORT": "5905"}, nil, nil, []string{"-device VGA,id=video0", "-device qemu-xhci,id=usb", "-device usb-tablet,bus=usb.0", "-object secret,id=vncpass,format=raw,file=" + vncpw, "-vnc 0.0.0.0:5,id=vnc0,password-secret=vncpass", "-vnc unix:" + vncsock + ",id=web"}},
		{"GRAPHICS=novnc", map[string]string{"GRAPHICS": "novnc", "VNC_KEYMAP": "fr"}, nil, nil,
			[]string{"-device VGA,id=video0", "-device qemu-xhci,id=usb", "-device usb-tablet,bus=usb.0", "-k fr", "-vnc unix:" + vncsock + ",id=web"}},
		{"VNC_PORT without GRAPHICS", map[string]string{"VNC_PORT": "5905"}, nil, nil, nil},
		{"RNG=0", map[string]string{"RNG": "0"}, nil, []string{"-device virtio-rng-pci"}, nil},
		{"BALLOON=1", map[string]string{"BALLOON": "1"}, nil, nil, []string{"-device virtio-balloon-pci"}},
		{"USB=1", map[string]string{"USB": "1"}, nil, nil, []string{"-device qemu-xhci,id=usb", "-device usb-tablet,bus=usb.0"}},
		{"HYPERV=1", map[string]string{"HYPERV": "1"}, nil, []string{"-cpu host"}, []string{"-cpu host,hv_relaxed,hv_vapic,hv_spinlocks=0x1fff,hv_time"}},
		{"IO_THREAD=1", map[string]string{"IO_THREAD": "1"}, nil, []string{diskDevice}, []string{"-object iothread,id=io0", "-device virtio-blk-pci,drive=disk0,iothread=io0,bootindex=1"}},
		{"IO_THREAD=1 DISK_TYPE=nvme", map[string]string{"IO_THREAD": "1", "DISK_TYPE": "nvme"}, nil, []string{diskDevice}, []string{"-device nvme,serial=disk0,drive=disk0,bootindex=1"}},
		{"BOOT_ORDER=network,hd", map[string]string{"BOOT_ORDER": "network,hd"}, nil, []string{dev1}, []string{dev1 + ",bootindex=0"}},
		{"NETWORK_GUEST_IP", map[string]string{"NETWORK_GUEST_IP": "192.168.77.15", "NETWORK_GUEST_IP6": "fd00:77::15"}, nil, []string{nat1},
			[]string{"-netdev user,id=net1,ipv4=on,ipv6=on,net=192.168.77.0/24,host=192.168.77.2,dhcpstart=192.168.77.15,dns=192.168.77.3," +
				"ipv6-net=fd00:77::/64,ipv6-host=fd00:77::2,ipv6-dns=fd00:77::3,hostfwd=tcp:0.0.0.0:2222-192.168.77.15:22"}},
		{"NETWORK_GUEST_IP6 without host IPv6", map[string]string{"NETWORK_GUEST_IP6": "fd00:77::15"}, func(f *Facts) { f.HostIPv6 = false }, []string{nat1},
			[]string{"-netdev user,id=net1,ipv4=on,ipv6=off,hostfwd=tcp:0.0.0.0:2222-:22"}},
		{"NETWORK2_GUEST_IP/16", map[string]string{"NETWORK2_MODE": "nat", "NETWORK2_GUEST_IP": "10.9.8.7/16"}, nil, nil,
			[]string{"-netdev user,id=net2,ipv4=on,ipv6=on,net=10.9.0.0/16,host=10.9.0.2,dhcpstart=10.9.8.7,dns=10.9.0.3", "-device virtio-net-pci,netdev=net2,mac=" + m2}},
		{"NETWORK_BOOT=1", map[string]string{"NETWORK_BOOT": "1"}, nil, []string{dev1, diskDevice},
			[]string{dev1 + ",bootindex=0", "-device virtio-blk-pci,drive=disk0,bootindex=2"}},
		{"NETWORK2_BOOT=1 BOOT_ORDER=hd,network", map[string]string{"NETWORK2_MODE": "nat", "NETWORK2_BOOT": "1", "BOOT_ORDER": "hd,network"}, nil, []string{diskDevice},
			[]string{"-device virtio-blk-pci,drive=disk0,bootindex=0", "-netdev user,id=net2,ipv4=on,ipv6=on", "-device virtio-net-pci,netdev=net2,mac=" + m2 + ",bootindex=1"}},
		{"IPXE_ENABLE=1", map[string]string{"IPXE_ENABLE": "1"}, func(f *Facts) { f.FirmwareExists = existsIn(ovmfCode, ovmfVars, "/usr/lib/ipxe/qemu/efi-virtio.rom") },
			[]string{dev1, diskDevice}, []string{dev1 + ",bootindex=0,romfile=/usr/lib/ipxe/qemu/efi-virtio.rom,disable-legacy=on", "-device virtio-blk-pci,drive=disk0,bootindex=2"}},
		{"IPXE_ENABLE=1 legacy e1000", map[string]string{"IPXE_ENABLE": "1", "BOOT_MODE": "legacy", "NETWORK_MODEL": "e1000", "BOOT_ORDER": "network,hd"},
			func(f *Facts) {
				f.FirmwareExists = existsIn("/usr/share/qemu/pxe-e1000.rom", "/usr/lib/ipxe/qemu/efi-e1000.rom")
			},
			[]string{dev1, codeDrive, varsDrive}, []string{"-device e1000,netdev=net1,mac=" + m1 + ",bootindex=0,romfile=/usr/share/qemu/pxe-e1000.rom"}},
		{"NETWORK_MODE=container", map[string]string{"NETWORK_MODE": "container", "NETWORK_CONTAINER_INTERFACE": "eth0"}, nil, []string{nat1}, []string{"-netdev tap,id=net1,fd=3"}},
		{"BOOT_ORDER=hd,network", map[string]string{"BOOT_ORDER": "hd,network"}, nil, []string{diskDevice, dev1},
			[]string{"-device virtio-blk-pci,drive=disk0,bootindex=0", dev1 + ",bootindex=1"}},
		// The CD drive is always there (empty here), so BOOT_ORDER numbers it.
		{"BOOT_ORDER=cdrom", map[string]string{"BOOT_ORDER": "cdrom"}, nil, []string{diskDevice, cdDevice},
			[]string{"-device virtio-blk-pci,drive=disk0", cdDevice + ",bootindex=0"}},
		{"DISK_CACHE=directsync", map[string]string{"DISK_CACHE": "directsync"}, nil, []string{diskDrive},
			[]string{"-drive file=" + st + "/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,cache=directsync,aio=native"}},
		{"DISK_CACHE=directsync, O_DIRECT refused", map[string]string{"DISK_CACHE": "directsync"}, func(f *Facts) { f.NoDirectIO = true }, []string{diskDrive},
			[]string{"-drive file=" + st + "/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,cache=writethrough,aio=threads"}},
		{"BLANK_DISK=1", map[string]string{"BLANK_DISK": "1", "BOOT_FROM": ""}, nil, nil, nil},
		{"GUEST_SHELL NO_CONSOLE FORCE_ISO ALLOCATE DOWNLOAD_RETRIES", map[string]string{"GUEST_SHELL": "/bin/sh", "NO_CONSOLE": "1", "FORCE_ISO": "1", "ALLOCATE": "1", "DOWNLOAD_RETRIES": "9"}, nil, nil, nil},
		{"EXTRA_ARGS", map[string]string{"EXTRA_ARGS": `-device virtio-balloon-pci -no-reboot -fw_cfg 'name=opt/x,string=a b'`}, nil, nil,
			[]string{"-device virtio-balloon-pci", "-no-reboot", "-fw_cfg name=opt/x,string=a b"}},
	}
	base := argv(t, baseEnv, testFacts())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := maps.Clone(baseEnv)
			maps.Copy(env, tc.env)
			f := testFacts()
			if tc.facts != nil {
				tc.facts(&f)
			}
			got := argv(t, env, f)
			removed, added := diffArgs(base, got)
			slices.Sort(removed)
			slices.Sort(added)
			wantRemoved, wantAdded := slices.Sorted(slices.Values(tc.removed)), slices.Sorted(slices.Values(tc.added))
			if !slices.Equal(removed, wantRemoved) || !slices.Equal(added, wantAdded) {
				t.Errorf("changed options:\nremoved %q\n   want %q\nadded   %q\n   want %q", removed, wantRemoved, added, wantAdded)
			}
		})
	}
	t.Run("EXTRA_ARGS last", func(t *testing.T) {
		env := maps.Clone(baseEnv)
		env["EXTRA_ARGS"] = "-d int -no-reboot"
		got := argv(t, env, testFacts())
		if !slices.Equal(got[len(got)-3:], []string{"-d", "int", "-no-reboot"}) {
			t.Errorf("EXTRA_ARGS are not last: %q", got)
		}
	})
}

func TestDiffArgs(t *testing.T) {
	removed, added := diffArgs(
		[]string{"-nodefaults", "-m", "1", "-device", "a", "-device", "a"},
		[]string{"-nodefaults", "-m", "2", "-device", "a", "-no-reboot"})
	if !slices.Equal(removed, []string{"-m 1", "-device a"}) || !slices.Equal(added, []string{"-m 2", "-no-reboot"}) {
		t.Errorf("diffArgs: removed %q added %q", removed, added)
	}
}

func TestNICPlanMACType(t *testing.T) {
	p := plan(t, baseEnv, testFacts())
	var _ net.HardwareAddr = p.NICs[0].MAC
	if a := p.NICs[0].MAC; a[0]&1 != 0 || a[0]&2 == 0 {
		t.Errorf("derived MAC %v is not locally administered unicast", a)
	}
}

func BenchmarkMakePlan(b *testing.B) {
	c := loadConfig(b, typicalEnv)
	f := testFacts()
	f.VhostNet = true
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MakePlan(c, f); err != nil {
			b.Fatal(err)
		}
	}
}
