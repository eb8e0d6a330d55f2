package cloudinit

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// vendorParts reads vendor-data as cloud-init does: a MIME multipart
// document whose parts are typed by Content-Type.
func vendorParts(t *testing.T, data []byte) []vendorPart {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("vendor-data is not a MIME message: %v\n%s", err, data)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || msg.Header.Get("MIME-Version") != "1.0" {
		t.Fatalf("vendor-data header: %q %v %v", mt, params, err)
	}
	var parts []vendorPart
	r := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		b, _ := io.ReadAll(p)
		parts = append(parts, vendorPart{name: p.FileName(), contentType: ct, data: b})
	}
}

func TestVendorDataIsStable(t *testing.T) {
	a := mustFiles(t, testSeed())["vendor-data"]
	b := mustFiles(t, testSeed())["vendor-data"]
	if !bytes.Equal(a, b) {
		t.Error("vendor-data differs between two renderings of one seed (the instance-id would change)")
	}
}

// TestAgentScript runs the vendor script with stub tools: it installs the
// agent with the package manager it finds only when qemu-ga is missing,
// starts it, exits 0 even when both fail, and does nothing at all when the
// user opted out.
func TestAgentScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, tc := range []struct {
		name   string
		tools  []string // stubs on PATH; each logs its argv
		fail   bool     // stubs exit 1
		optOut bool     // the user-data made NoAgentMarker
		want   string
	}{
		{"opted out", []string{"apt-get", "systemctl"}, false, true, ""},
		{"apt, agent missing", []string{"apt-get", "systemctl"}, false, false,
			"apt-get update -qq\napt-get install -y -qq qemu-guest-agent\nsystemctl start qemu-guest-agent\n"},
		{"agent present", []string{"qemu-ga", "apt-get", "systemctl"}, false, false, "systemctl start qemu-guest-agent\n"},
		{"dnf and openrc", []string{"dnf", "rc-service", "rc-update"}, false, false,
			"dnf install -y -q qemu-guest-agent\nrc-update add qemu-guest-agent default\nrc-service qemu-guest-agent start\n"},
		{"everything fails", []string{"apt-get", "systemctl"}, true, false, "apt-get update -qq\nsystemctl start qemu-guest-agent\n"},
		{"nothing there", nil, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "log")
			code := "0"
			if tc.fail {
				code = "1"
			}
			for _, tool := range tc.tools {
				stub := "#!" + sh + "\necho \"${0##*/} $*\" >>" + log + "\nexit " + code + "\n"
				if err := os.WriteFile(filepath.Join(dir, tool), []byte(stub), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// Only the stubs: no real package manager may run. The script
			// checks /usr/sbin/qemu-ga too; the host's copy would make
			// "agent missing" pass for the wrong reason, so it is renamed
			// in the script under test.
			script := strings.ReplaceAll(agentScript, "/usr/sbin/qemu-ga", dir+"/absent")
			script = strings.ReplaceAll(script, "/usr/bin/qemu-ga", dir+"/absent")
			marker := filepath.Join(dir, "no-guest-agent")
			script = strings.ReplaceAll(script, NoAgentMarker, marker)
			if tc.optOut {
				if err := os.WriteFile(marker, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(sh, "-c", script)
			cmd.Env = []string{"PATH=" + dir}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("script failed: %v\n%s", err, out)
			}
			got, _ := os.ReadFile(log)
			if string(got) != tc.want {
				t.Errorf("commands run:\n%s\nwant:\n%s\noutput: %s", got, tc.want, out)
			}
		})
	}
}

func TestMountsInVendorData(t *testing.T) {
	s := testSeed()
	s.Mounts = []Mount{{Tag: "share1", Target: "/mnt/share", Virtiofs: true}, {Tag: "share2", Target: "/srv/ro", ReadOnly: true}}
	parts := vendorParts(t, mustFiles(t, s)["vendor-data"])
	if len(parts) != 2 || parts[1].name != "vmrunner-shares.sh" {
		t.Fatalf("vendor-data parts %+v", parts)
	}
	script := string(parts[1].data)
	for _, want := range []string{
		"mkdir -p '/mnt/share'\n",
		"echo 'share1 /mnt/share virtiofs nofail 0 0' >>/etc/fstab",
		"echo 'share2 /srv/ro 9p trans=virtio,version=9p2000.L,msize=262144,nofail,ro 0 0' >>/etc/fstab",
		"mountpoint -q '/srv/ro' || mount '/srv/ro'",
		"exit 0\n",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("mount script lacks %q:\n%s", want, script)
		}
	}
	if out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("sh -n: %v: %s", err, out)
	}
}
