package integration

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const redfishPassword = "wire-redfish-secret"

// python is Debian's, which has sushy (another python on PATH may not).
const python = "/usr/bin/python3"

// rf is an HTTPS client of the wired Redfish service.
type rf struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (r *rf) do(method, path, user, pass string, body any) (int, map[string]any, http.Header) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.c.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	return resp.StatusCode, doc, resp.Header
}

func (r *rf) ok(method, path string, body any) map[string]any {
	r.t.Helper()
	code, doc, _ := r.do(method, path, "admin", redfishPassword, body)
	if code/100 != 2 {
		r.t.Fatalf("%s %s: %d %v", method, path, code, doc)
	}
	return doc
}

func (r *rf) reset(kind string) {
	r.t.Helper()
	r.ok("POST", "/redfish/v1/Systems/testvm/Actions/ComputerSystem.Reset", map[string]string{"ResetType": kind})
}

func (r *rf) power() string {
	r.t.Helper()
	s, _ := r.ok("GET", "/redfish/v1/Systems/testvm", nil)["PowerState"].(string)
	return s
}

func (r *rf) waitPower(want string, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for r.power() != want {
		if time.Now().After(deadline) {
			r.t.Fatalf("PowerState %q, want %q", r.power(), want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// bootISO makes a small BIOS-bootable ISO of the test guest: isolinux
// prints its banner on the serial line, then boots the guest's kernel.
func bootISO(t *testing.T) string {
	t.Helper()
	isolinux := "/usr/lib/ISOLINUX/isolinux.bin"
	ldlinux := "/usr/lib/syslinux/modules/bios/ldlinux.c32"
	_, errG := exec.LookPath("genisoimage")
	_, errI := os.Stat(isolinux)
	_, errL := os.Stat(ldlinux)
	need(t, "genisoimage, isolinux and syslinux-common", errG == nil && errI == nil && errL == nil)
	dir := filepath.Join(t.TempDir(), "iso")
	if err := os.MkdirAll(filepath.Join(dir, "isolinux"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(isolinux, "isolinux/isolinux.bin")
	copyFile(ldlinux, "isolinux/ldlinux.c32")
	copyFile(filepath.Join(guestDir, "vmlinuz"), "vmlinuz")
	copyFile(filepath.Join(guestDir, "initrd.gz"), "initrd.gz")
	cfg := "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT vmtest\n" +
		"LABEL vmtest\n  KERNEL /vmlinuz\n  APPEND initrd=/initrd.gz console=ttyS0 quiet no_timer_check\n"
	if err := os.WriteFile(filepath.Join(dir, "isolinux/isolinux.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(t.TempDir(), "guest.iso")
	out, err := exec.Command("genisoimage", "-quiet", "-o", iso, "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
		"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", "-R", "-J", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("genisoimage: %v: %s", err, out)
	}
	return iso
}

// TestRedfishEndToEnd drives the wired BMC as Ironic does, through sushy,
// against a blank-disk VM: virtual media over plain http, a Cd Once
// override that boots the ISO once, Pxe Once that makes the NIC's iPXE
// ask DHCP for a boot file, ForceOff/On keeping the MAC, GracefulShutdown
// as an ACPI power-off with the BMC still answering, and 401s for no or
// wrong credentials.
func TestRedfishEndToEnd(t *testing.T) {
	needGuest(t)
	_, err := os.Stat("/usr/lib/python3/dist-packages/sushy/__init__.py")
	need(t, "python3-sushy", err == nil)
	_, err = os.Stat("/usr/lib/ipxe/qemu/efi-virtio.rom")
	need(t, "ipxe-qemu (the NIC's boot ROM)", err == nil)
	iso := bootISO(t)

	media := http.NewServeMux()
	media.HandleFunc("/guest.iso", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, iso) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: media}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	isoURL := "http://" + l.Addr().String() + "/guest.iso"

	env := GuestEnv(t)
	delete(env, "KERNEL")
	delete(env, "INITRD")
	delete(env, "KERNEL_CMDLINE")
	port := FreePort(t)
	// QEMU runs as its own user (QEMU_USER): it must be able to write the dump.
	dumpDir, err := os.MkdirTemp("", "redfish-pcap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dumpDir) })
	if err := os.Chmod(dumpDir, 0o777); err != nil {
		t.Fatal(err)
	}
	pcap := filepath.Join(dumpDir, "net.pcap")
	env["BOOT_FROM"] = "blank"
	env["DISK_SIZE"] = "64M"
	env["SHUTDOWN_TIMEOUT"] = "120"
	env["REDFISH_ENABLE"] = "1"
	env["REDFISH_LISTEN"] = "127.0.0.1"
	env["REDFISH_PORT"] = fmt.Sprint(port)
	env["REDFISH_PASSWORD"] = redfishPassword
	// Each QEMU run dumps its NIC's frames: iPXE's DHCP request says
	// "PXEClient", which the firmware only sends when it boots the network.
	env["EXTRA_ARGS"] = "-object filter-dump,id=dump0,netdev=net1,file=" + pcap
	v := Start(t, env)

	r := &rf{t: t, base: fmt.Sprintf("https://127.0.0.1:%d", port),
		c: &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	deadline := time.Now().Add(time.Minute)
	for {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redfish never listened; stderr:\n%s", v.Stderr())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(v.Stderr(), `"sha256":"`) {
		t.Errorf("the certificate's fingerprint is not logged")
	}

	// Hostile: nothing but the service root without credentials.
	for _, c := range []struct{ user, pass string }{{"", ""}, {"admin", "wrong-password"}, {"root", redfishPassword}} {
		code, _, h := r.do("GET", "/redfish/v1/Systems/testvm", c.user, c.pass, nil)
		if code != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" {
			t.Errorf("user %q: %d (WWW-Authenticate %q), want 401 with a challenge", c.user, code, h.Get("WWW-Authenticate"))
		}
	}
	code, doc, _ := r.do("POST", "/redfish/v1/Managers/BMC/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", "", "", map[string]string{"Image": isoURL})
	if code != http.StatusUnauthorized {
		t.Errorf("InsertMedia without auth: %d %v", code, doc)
	}
	// An unreachable medium is a clear error and changes nothing.
	code, doc, _ = r.do("POST", "/redfish/v1/Managers/BMC/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", "admin", redfishPassword,
		map[string]string{"Image": "http://127.0.0.1:1/missing.iso"})
	if code/100 == 2 || !strings.Contains(fmt.Sprint(doc), "127.0.0.1:1/missing.iso") {
		t.Errorf("unreachable medium: %d %v, want a Redfish error naming it", code, doc)
	}
	if img := r.ok("GET", "/redfish/v1/Managers/BMC/VirtualMedia/Cd", nil)["Inserted"]; img != false {
		t.Errorf("after a failed insert Inserted=%v", img)
	}

	// As Ironic's redfish-virtual-media boot does it.
	script := `import sys, sushy
from sushy import exceptions
c = sushy.Sushy(sys.argv[1], username='admin', password=sys.argv[2], verify=False)
s = c.get_system('/redfish/v1/Systems/testvm')
m = c.get_manager('/redfish/v1/Managers/BMC')
cd = m.virtual_media.get_member('/redfish/v1/Managers/BMC/VirtualMedia/Cd')
cd.insert_media(sys.argv[3], inserted=True, write_protected=True)
s.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_CD, enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
s.reset_system(sushy.RESET_FORCE_RESTART)
print('sushy-done', s.power_state)
`
	cmd := exec.Command(python, "-c", script, r.base, redfishPassword, isoURL)
	// Not the host's CA bundle variables: requests lets them override
	// verify=False. No proxy: the BMC is on loopback.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "NO_PROXY=*", "no_proxy=*", "PYTHONWARNINGS=ignore"}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sushy-done") {
		t.Fatalf("sushy: %v: %s", err, out)
	}
	waitCount(t, v, `^ISOLINUX \d`, 1, 5*time.Minute)
	waitCount(t, v, `^VMTEST ready`, 1, 8*time.Minute)
	mac := v.WaitLine(`^VMTEST nic name=eth0 mac=(\S+)`, time.Second)[1]
	sys := r.ok("GET", "/redfish/v1/Systems/testvm", nil)
	if b, _ := sys["Boot"].(map[string]any); b["BootSourceOverrideEnabled"] != "Disabled" {
		t.Errorf("after the Once boot: Boot %v, want the override back to Disabled", b)
	}
	nic := r.ok("GET", "/redfish/v1/Systems/testvm/EthernetInterfaces", nil)["Members"].([]any)[0].(map[string]any)["@odata.id"].(string)
	if got := r.ok("GET", nic, nil)["MACAddress"]; !strings.EqualFold(fmt.Sprint(got), mac) {
		t.Errorf("Redfish MAC %v, guest's %s", got, mac)
	}

	// Pxe Once: the NIC's iPXE asks for a boot file (no Cd boot).
	r.ok("PATCH", "/redfish/v1/Systems/testvm", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}})
	r.reset("ForceRestart")
	deadline = time.Now().Add(5 * time.Minute)
	for {
		b, _ := os.ReadFile(pcap)
		if bytes.Contains(b, []byte("PXEClient")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no PXEClient DHCP request from the NIC after Pxe Once (%d bytes dumped)", len(b))
		}
		time.Sleep(time.Second)
	}
	if n := strings.Count(v.Console(), "ISOLINUX "); n != 1 {
		t.Errorf("the ISO booted %d times, want once: Once must not stick", n)
	}

	// Cd Continuous, then ForceOff/On: the same MAC comes back.
	r.ok("PATCH", "/redfish/v1/Systems/testvm", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Continuous"}})
	r.reset("ForceOff")
	r.waitPower("Off", time.Minute)
	r.reset("On")
	waitCount(t, v, `^VMTEST ready`, 2, 8*time.Minute)
	if mac2 := waitCount(t, v, `^VMTEST nic name=eth0 mac=(\S+)`, 2, time.Second)[1]; mac2 != mac {
		t.Errorf("MAC after ForceOff/On %s, before %s", mac2, mac)
	}
	if b, _ := os.ReadFile(pcap); bytes.Contains(b, []byte("PXEClient")) {
		t.Errorf("a Cd boot asked for a network boot file")
	}

	// GracefulShutdown: the guest's ACPI handler powers it off; the BMC stays.
	r.reset("GracefulShutdown")
	waitCount(t, v, `^VMTEST powerbutton`, 1, 3*time.Minute)
	r.waitPower("Off", 3*time.Minute)
	select {
	case <-v.exited:
		t.Fatalf("vmrunner ended with the VM (status %d): the BMC must stay", v.ExitCode())
	case <-time.After(2 * time.Second):
	}
	if r.power() != "Off" {
		t.Errorf("the BMC does not answer Off after the shutdown")
	}
	v.Signal(syscall.SIGTERM)
	if code := v.Wait(2 * time.Minute); code != 0 {
		t.Logf("vmrunner exit %d after SIGTERM with the VM off", code)
	}
}
