package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/des"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math/bits"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/vmrunner/vmrunner/certs"
	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/webconsole"
)

// screenLine is what the test guest writes on its screen (vmtest.screen=1);
// OCR must find these words.
const screenLine = "HELLO CONSOLE 4711"

const vncPassword = "v3ry-s3c" // 8 characters: all of it counts

// consoleEnv boots the test guest with a screen: the kernel console on the
// VGA text console too, and the known line on it. vmrunner stays up with
// the VM off, so the control verbs power-cycle it.
func consoleEnv(t *testing.T) map[string]string {
	env := GuestEnv(t)
	env["KERNEL_CMDLINE"] = "console=tty0 console=ttyS0 quiet vmtest.screen=1"
	env["GRAPHICS"] = "vnc"
	env["VNC_LISTEN"] = "127.0.0.1"
	env["VNC_PORT"] = fmt.Sprint(vncFreePort(t))
	env["VNC_PASSWORD"] = vncPassword
	env["KEEP_ALIVE_AFTER_VM_STOP"] = "1"
	return env
}

func needConsoleTools(t *testing.T) {
	t.Helper()
	for _, c := range []string{"vncsnapshot", "vncpasswd", "tesseract", "chromium", "chromedriver"} {
		_, err := exec.LookPath(c)
		need(t, c+" (scripts/test-deps.sh)", err == nil)
	}
	_, err := os.Stat("/usr/share/novnc/vnc.html")
	need(t, "noVNC in /usr/share/novnc (Debian package novnc)", err == nil)
}

// setVNCPassword runs vmrunner vnc-password with pw on its stdin, as a
// user would with docker exec -i.
func setVNCPassword(t *testing.T, v *VM, pw string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, "vnc-password")
	cmd.Env = []string{"DATA_DIR=" + v.DataDir, "GUEST_NAME=" + v.Name, "PATH=" + os.Getenv("PATH")}
	cmd.Stdin = strings.NewReader(pw + "\n")
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState.ExitCode()
}

// TestConsole boots the guest with GRAPHICS=vnc and looks at its screen
// with real clients over the password-protected port; the password is
// changed live with vmrunner vnc-password and kept across a power cycle.
func TestConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	needGuest(t)
	needConsoleTools(t)
	env := consoleEnv(t)
	v := Start(t, env)
	v.WaitLine(`^VMTEST screen line=`, 3*time.Minute)
	v.WaitReady()
	port := env["VNC_PORT"]

	t.Run("password file", func(t *testing.T) {
		st, err := os.Stat(filepath.Join(v.StateDir(), "vnc-password"))
		if err != nil || st.Mode().Perm()&0o007 != 0 {
			t.Errorf("vnc-password: %v, mode %v; want no access for others", err, st.Mode())
		}
		args, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", qemuPID(t, v)))
		if bytes.Contains(args, []byte(vncPassword)) {
			t.Errorf("the VNC password is on QEMU's command line")
		}
	})

	t.Run("VNC auth only", func(t *testing.T) {
		if types := rfbSecurityTypes(t, "127.0.0.1:"+port); !bytes.Equal(types, []byte{2}) {
			t.Errorf("security types %v, want only [2] (VNC authentication)", types)
		}
	})

	t.Run("vncsnapshot", func(t *testing.T) {
		dir := t.TempDir()
		frame, out, err := vncsnapshot(t, dir, vncPassword, port)
		if err != nil {
			t.Fatalf("vncsnapshot with the password: %v\n%s", err, out)
		}
		dump := screendump(t, v, filepath.Join(dir, "dump.ppm"))
		if d := meanDiff(frame, dump); d > 8 {
			t.Errorf("the VNC frame differs from QMP's screendump by %.1f per channel on average", d)
		}
		for name, img := range map[string]image.Image{"VNC frame": frame, "screendump": dump} {
			if text := ocr(t, img, 3); !strings.Contains(text, screenLine) {
				t.Errorf("%s: OCR reads %q, want %q", name, text, screenLine)
			}
		}
		for _, pw := range []string{"wrong-pw", vncPassword[:7], "3ry-s3c"} {
			if _, out, err := vncsnapshot(t, dir, pw, port); err == nil || !strings.Contains(out, "authentication failed") {
				t.Errorf("password %q: err %v, output %s; want refused", pw, err, out)
			}
		}
	})

	t.Run("RFB handshake", func(t *testing.T) {
		// vncsnapshot cannot even send an empty password; speak RFB here.
		for pw, ok := range map[string]bool{vncPassword: true, "": false, "wrong": false, vncPassword + "x": true} {
			if got := rfbAuth(t, "127.0.0.1:"+port, pw); got != ok {
				t.Errorf("VNC auth with %q: accepted %v, want %v", pw, got, ok)
			}
		}
	})

	const newPassword = "n3w-Pw.9"
	t.Run("live password change", func(t *testing.T) {
		for _, bad := range []string{"nine-chars", ""} {
			if out, code := setVNCPassword(t, v, bad); code == 0 || (bad != "" && strings.Contains(out, bad)) {
				t.Errorf("vnc-password %q: exit %d, %s; want refused without echoing it", bad, code, out)
			}
		}
		if out, code := setVNCPassword(t, v, newPassword); code != 0 {
			t.Fatalf("vnc-password: exit %d: %s", code, out)
		}
		checkVNCPasswords(t, port, newPassword, vncPassword)
		if b, _ := os.ReadFile(filepath.Join(v.StateDir(), "vnc-password")); string(b) != newPassword {
			t.Errorf("the state folder keeps %q, want the new password", b)
		}
	})

	t.Run("kept across stop and start", func(t *testing.T) {
		// VNC_PASSWORD still says the old one: vmrunner's start-up already
		// applied it; what a later power-on uses is the kept file.
		mustCtl(t, v, "stop")
		waitPower(t, v, "off", 2*time.Minute)
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
			c.Close()
			t.Errorf("the VNC port answers with the VM off")
		}
		mustCtl(t, v, "start")
		waitCount(t, v, `^VMTEST ready`, 2, 3*time.Minute)
		checkVNCPasswords(t, port, newPassword, vncPassword)
	})

	if strings.Contains(v.Stderr(), newPassword) || strings.Contains(v.Stderr(), vncPassword) {
		t.Errorf("vmrunner's log holds a VNC password")
	}
}

// checkVNCPasswords: vncsnapshot gets a frame with good and is refused with
// old.
func checkVNCPasswords(t *testing.T, port, good, old string) {
	t.Helper()
	dir := t.TempDir()
	if _, out, err := vncsnapshot(t, dir, old, port); err == nil || !strings.Contains(out, "authentication failed") {
		t.Errorf("the old password: err %v, output %s; want refused", err, out)
	}
	if _, out, err := vncsnapshot(t, dir, good, port); err != nil {
		t.Errorf("vncsnapshot with the new password: %v\n%s", err, out)
	}
}

// TestConsoleWeb runs GRAPHICS=novnc: vmrunner itself serves noVNC over
// HTTPS, and headless Chromium looks at the screen, types, and reconnects
// by itself after vmrunner stop and start; a live vnc-password change
// becomes the web console's password (NOVNC_PASSWORD unset).
func TestConsoleWeb(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	needGuest(t)
	needConsoleTools(t)
	env := GuestEnv(t)
	env["KERNEL_CMDLINE"] = "console=tty0 console=ttyS0 quiet vmtest.screen=1"
	env["GRAPHICS"] = "novnc"
	env["NOVNC_PORT"] = fmt.Sprint(FreePort(t))
	env["NOVNC_USERNAME"] = "viewer"
	env["KEEP_ALIVE_AFTER_VM_STOP"] = "1"
	begin := time.Now()
	v := Start(t, env)
	addr := "127.0.0.1:" + env["NOVNC_PORT"]

	// The generated VNC password is logged once; it is the web console's.
	var pass string
	waitFor(t, time.Minute, "the generated VNC password in the log", func() bool {
		for _, line := range strings.Split(v.Stderr(), "\n") {
			var e struct {
				Msg string `json:"msg"`
				PW  string `json:"vnc_password"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.PW != "" {
				pass = e.PW
				return true
			}
		}
		return false
	})
	waitFor(t, time.Minute, "the web console's log line", func() bool {
		return strings.Contains(v.Stderr(), "certificate_sha256")
	})
	if len(pass) != 8 {
		t.Fatalf("logged VNC password %q, want 8 characters", pass)
	}
	browserTest(t, v, addr, "viewer", pass, begin)
}

func browserTest(t *testing.T, v *VM, addr, user, pass string, begin time.Time) {
	base := "https://" + addr
	b := startBrowser(t)

	// Without login: the page and the WebSocket are refused.
	b.navigate(base + "/vnc.html")
	if got := b.script("return document.getElementById('noVNC_container') === null"); got != true {
		t.Errorf("without login the browser shows noVNC")
	}
	t.Logf("without login the browser is at %v", b.script("return location.href"))
	for _, cred := range [][2]string{{"", ""}, {user, "wrong"}, {"admin", pass}} {
		if code, auth := getStatus(t, base+"/", cred[0], cred[1]); code != http.StatusUnauthorized || !strings.HasPrefix(auth, "Basic ") {
			t.Errorf("/ as %q/%q: %d, WWW-Authenticate %q; want 401 with a Basic challenge", cred[0], cred[1], code, auth)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		h := http.Header{}
		if cred != [2]string{} {
			h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred[0]+":"+cred[1])))
		}
		_, resp, err := websocket.Dial(ctx, "wss://"+addr+"/websockify", &websocket.DialOptions{
			HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}}, HTTPHeader: h})
		cancel()
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("WebSocket as %q/%q: %v %v, want 401", cred[0], cred[1], err, resp)
		}
	}

	// With login in the URL: / leads to noVNC, which connects.
	b.navigate(fmt.Sprintf("https://%s:%s@%s/", user, pass, addr))
	b.waitConnected(t, 3*time.Minute)
	shot := b.screenshotOCR(t, screenLine, 3*time.Minute)
	t.Logf("browser screen reads %q; %s from vmrunner's start to a readable noVNC frame", shot, time.Since(begin).Round(100*time.Millisecond))

	// Typed in the browser, echoed by the guest on its serial console.
	b.click("canvas")
	b.typeKeys("typed42\uE007")
	v.WaitLine(`^VMTEST tty line=typed42$`, time.Minute)

	// Power cycle through the controller: the same vmrunner and page; the
	// page reconnects by itself.
	mustCtl(t, v, "stop")
	waitPower(t, v, "off", 2*time.Minute)
	waitFor(t, time.Minute, "noVNC to notice the VM is gone", func() bool {
		return !strings.Contains(b.classes(), "noVNC_connected")
	})
	if resp, _ := getStatus(t, base+"/", user, pass); resp != http.StatusServiceUnavailable {
		t.Errorf("/ with the VM off: %d, want 503", resp)
	}
	mustCtl(t, v, "start")
	cycled := time.Now()
	waitCount(t, v, `^VMTEST ready`, 2, 3*time.Minute)
	b.waitConnected(t, 2*time.Minute)
	b.screenshotOCR(t, screenLine, 2*time.Minute)
	t.Logf("%s from vmrunner start to a readable noVNC frame again", time.Since(cycled).Round(100*time.Millisecond))

	// A live VNC password change is the web console's new password.
	const newPass = "w3b-Pw.7"
	if out, code := setVNCPassword(t, v, newPass); code != 0 {
		t.Fatalf("vnc-password: exit %d: %s", code, out)
	}
	if code, _ := getStatus(t, base+"/", user, pass); code != http.StatusUnauthorized {
		t.Errorf("the old password after vnc-password: %d, want 401", code)
	}
	if code, _ := getStatus(t, base+"/", user, newPass); code == http.StatusUnauthorized {
		t.Errorf("the new password after vnc-password: %d", code)
	}

	log := v.Stderr()
	if strings.Count(log, pass) != 1 || strings.Contains(log, newPass) || strings.Contains(log, "Basic ") {
		t.Errorf("vmrunner's log shows a secret other than the generated password's one line:\n%s", log)
	}
	if t.Failed() {
		t.Logf("vmrunner log:\n%s", log)
	}
}

// vncFreePort is a free loopback port of 5900 or above (VNC_PORT's range).
func vncFreePort(t *testing.T) int {
	for range 50 {
		if p := FreePort(t); p >= 5900 {
			return p
		}
	}
	t.Fatal("no free port above 5900")
	return 0
}

// rfbSecurityTypes reads what a VNC server offers before any auth.
func rfbSecurityTypes(t *testing.T, addr string) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	ver, err := r.ReadString('\n')
	if err != nil || ver != "RFB 003.008\n" {
		t.Fatalf("greeting %q, %v", ver, err)
	}
	c.Write([]byte(ver))
	n, err := r.ReadByte()
	if err != nil {
		t.Fatal(err)
	}
	types := make([]byte, n)
	if _, err := io.ReadFull(r, types); err != nil {
		t.Fatal(err)
	}
	return types
}

// rfbAuth does RFB 3.8's VNC authentication with pw and says whether the
// server accepted it. The DES key is the password's first 8 bytes, each
// with its bits reversed (the protocol's historic quirk).
func rfbAuth(t *testing.T, addr, pw string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("RFB 003.008\n"))
	n, _ := r.ReadByte()
	io.CopyN(io.Discard, r, int64(n))
	c.Write([]byte{2})
	challenge := make([]byte, 16)
	if _, err := io.ReadFull(r, challenge); err != nil {
		t.Fatal(err)
	}
	var key [8]byte
	copy(key[:], pw)
	for i, b := range key {
		key[i] = bits.Reverse8(b)
	}
	block, err := des.NewCipher(key[:])
	if err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 16)
	block.Encrypt(resp[:8], challenge[:8])
	block.Encrypt(resp[8:], challenge[8:])
	c.Write(resp)
	var result [4]byte
	if _, err := io.ReadFull(r, result[:]); err != nil {
		t.Fatal(err)
	}
	return result == [4]byte{}
}

// vncsnapshot captures one frame with password pw (vncpasswd -f makes the
// obfuscated file TigerVNC and vncsnapshot read).
func vncsnapshot(t *testing.T, dir, pw, port string) (image.Image, string, error) {
	t.Helper()
	pwFile, jpg := filepath.Join(dir, "passwd"), filepath.Join(dir, "frame.jpg")
	os.Remove(jpg)
	mk := exec.Command("vncpasswd", "-f")
	mk.Stdin = strings.NewReader(pw + "\n")
	enc, err := mk.Output()
	if err != nil {
		t.Fatalf("vncpasswd -f: %v", err)
	}
	if err := os.WriteFile(pwFile, enc, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The display number is the port less 5900.
	var p int
	fmt.Sscan(port, &p)
	out, err := exec.CommandContext(ctx, "vncsnapshot", "-passwd", pwFile, "-quality", "100",
		fmt.Sprintf("127.0.0.1:%d", p-5900), jpg).CombinedOutput()
	if err != nil {
		return nil, string(out), err
	}
	f, err := os.Open(jpg)
	if err != nil {
		return nil, string(out), err
	}
	defer f.Close()
	img, err := jpeg.Decode(f)
	return img, string(out), err
}

// screendump asks QEMU for the screen through QMP (the probe socket, which
// the supervisor uses only briefly).
func screendump(t *testing.T, v *VM, path string) image.Image {
	t.Helper()
	// QEMU may run as its own user (QEMU_USER): it writes the dump.
	dir := filepath.Dir(path)
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o733); err != nil {
			t.Fatal(err)
		}
	}
	var c net.Conn
	var err error
	waitFor(t, 30*time.Second, "the QMP probe socket", func() bool {
		c, err = net.Dial("unix", filepath.Join(v.StateDir(), "qmp-probe.sock"))
		return err == nil
	})
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	dec := json.NewDecoder(c)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{`{"execute":"qmp_capabilities"}`, fmt.Sprintf(`{"execute":"screendump","arguments":{"filename":%q}}`, path)} {
		fmt.Fprintln(c, cmd)
		for {
			var r map[string]any
			if err := dec.Decode(&r); err != nil {
				t.Fatal(err)
			}
			if e, ok := r["error"]; ok {
				t.Fatalf("QMP %s: %v", cmd, e)
			}
			if _, ok := r["return"]; ok {
				break
			}
		}
	}
	img, err := readPPM(path)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func readPPM(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var w, h, maxv int
	var magic string
	if _, err := fmt.Fscan(r, &magic, &w, &h, &maxv); err != nil || magic != "P6" || maxv != 255 {
		return nil, fmt.Errorf("not a P6 PPM (%q %d): %v", magic, maxv, err)
	}
	r.ReadByte() // the single blank after the header
	pix := make([]byte, w*h*3)
	if _, err := io.ReadFull(r, pix); err != nil {
		return nil, err
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < w*h; i++ {
		img.Pix[i*4], img.Pix[i*4+1], img.Pix[i*4+2], img.Pix[i*4+3] = pix[i*3], pix[i*3+1], pix[i*3+2], 255
	}
	return img, nil
}

// meanDiff is the mean absolute difference per colour channel (0-255) of
// two images of the same size; +Inf when the sizes differ.
func meanDiff(a, b image.Image) float64 {
	if a.Bounds().Size() != b.Bounds().Size() {
		return 1e9
	}
	var sum, n float64
	ab, bb := a.Bounds(), b.Bounds()
	for y := 0; y < ab.Dy(); y++ {
		for x := 0; x < ab.Dx(); x++ {
			r1, g1, b1, _ := a.At(ab.Min.X+x, ab.Min.Y+y).RGBA()
			r2, g2, b2, _ := b.At(bb.Min.X+x, bb.Min.Y+y).RGBA()
			for _, d := range [][2]uint32{{r1, r2}, {g1, g2}, {b1, b2}} {
				diff := float64(d[0]>>8) - float64(d[1]>>8)
				if diff < 0 {
					diff = -diff
				}
				sum += diff
				n++
			}
		}
	}
	return sum / n
}

// ocr reads img with tesseract after scaling it up (a VGA text font is
// too small for it as it is) and inverting it to dark on light.
func ocr(t *testing.T, img image.Image, scale int) string {
	t.Helper()
	bnd := img.Bounds()
	big := image.NewGray(image.Rect(0, 0, bnd.Dx()*scale, bnd.Dy()*scale))
	for y := 0; y < big.Bounds().Dy(); y++ {
		for x := 0; x < big.Bounds().Dx(); x++ {
			g := color.GrayModel.Convert(img.At(bnd.Min.X+x/scale, bnd.Min.Y+y/scale)).(color.Gray)
			big.SetGray(x, y, color.Gray{Y: 255 - g.Y})
		}
	}
	f, err := os.CreateTemp(t.TempDir(), "ocr-*.png")
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, big); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("tesseract", f.Name(), "stdout").Output()
	if err != nil {
		t.Fatalf("tesseract: %v", err)
	}
	return strings.Join(strings.Fields(string(out)), " ")
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// getStatus is the status and WWW-Authenticate of url; user "" sends no
// credentials.
func getStatus(t *testing.T, url, user, pass string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: insecureTLS()},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", url, nil)
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// browser is headless Chromium driven through chromedriver's W3C
// WebDriver HTTP interface.
type browser struct {
	t    *testing.T
	base string // http://127.0.0.1:PORT/session/ID
}

func startBrowser(t *testing.T) *browser {
	t.Helper()
	port := FreePort(t)
	drv := exec.Command("chromedriver", fmt.Sprintf("--port=%d", port))
	drv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := drv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-drv.Process.Pid, syscall.SIGKILL)
		drv.Wait()
	})
	root := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, 20*time.Second, "chromedriver", func() bool {
		resp, err := http.Get(root + "/status")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	profile := t.TempDir()
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName":         "chrome",
		"acceptInsecureCerts": true, // the self-signed certificate
		"goog:chromeOptions": map[string]any{
			"binary": "/usr/bin/chromium",
			"args": []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
				"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + profile,
				"--window-size=1440,900"},
		},
	}}}
	b := &browser{t: t, base: root + "/session"}
	var s struct {
		SessionID string `json:"sessionId"`
	}
	b.call("POST", "", caps, &s)
	b.base += "/" + s.SessionID
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", b.base, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	return b
}

func (b *browser) call(method, path string, body, value any) {
	b.t.Helper()
	var in io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		in = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, b.base+path, in)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		b.t.Fatalf("WebDriver %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || resp.StatusCode != 200 {
		b.t.Fatalf("WebDriver %s %s: %s %.500s", method, path, resp.Status, raw)
	}
	if value != nil {
		if err := json.Unmarshal(r.Value, value); err != nil {
			b.t.Fatalf("WebDriver %s %s: %v in %.300s", method, path, err, raw)
		}
	}
}

func (b *browser) navigate(url string) { b.call("POST", "/url", map[string]string{"url": url}, nil) }

func (b *browser) script(js string, args ...any) any {
	var v any
	if args == nil {
		args = []any{}
	}
	b.call("POST", "/execute/sync", map[string]any{"script": js, "args": args}, &v)
	return v
}

func (b *browser) asyncScript(js string, args ...any) any {
	var v any
	b.call("POST", "/execute/async", map[string]any{"script": js, "args": args}, &v)
	return v
}

func (b *browser) classes() string {
	return fmt.Sprint(b.script("return document.documentElement.className"))
}

func (b *browser) waitConnected(t *testing.T, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "noVNC to connect", func() bool {
		return strings.Contains(b.classes(), "noVNC_connected")
	})
	status := fmt.Sprint(b.script("const s = document.getElementById('noVNC_status'); return s.className + ' ' + s.textContent"))
	if strings.Contains(status, "noVNC_status_error") {
		t.Errorf("noVNC shows an error: %s", status)
	}
}

func (b *browser) screenshot() image.Image {
	var s string
	b.call("GET", "/screenshot", nil, &s)
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b.t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		b.t.Fatal(err)
	}
	return img
}

// screenshotOCR waits until the browser's screenshot shows want; the first
// frame may take a moment to arrive and be drawn.
func (b *browser) screenshotOCR(t *testing.T, want string, timeout time.Duration) string {
	t.Helper()
	var text string
	deadline := time.Now().Add(timeout)
	for {
		img := b.screenshot()
		text = ocr(t, img, 1)
		if strings.Contains(text, want) {
			return text
		}
		if time.Now().After(deadline) {
			path := filepath.Join(os.TempDir(), "console-test-screenshot.png")
			if f, err := os.Create(path); err == nil {
				png.Encode(f, img)
				f.Close()
			}
			t.Fatalf("the browser's screen reads %q, want %q (screenshot in %s)", text, want, path)
		}
		time.Sleep(2 * time.Second)
	}
}

func (b *browser) click(css string) {
	var el map[string]string
	b.call("POST", "/element", map[string]string{"using": "css selector", "value": css}, &el)
	for _, id := range el {
		b.call("POST", "/element/"+id+"/click", map[string]any{}, nil)
		return
	}
	b.t.Fatalf("no element %s", css)
}

// typeKeys presses and releases each key (WebDriver key values: \uE007 is
// Enter) in the focused element.
func (b *browser) typeKeys(keys string) {
	var acts []map[string]string
	for _, k := range keys {
		acts = append(acts, map[string]string{"type": "keyDown", "value": string(k)}, map[string]string{"type": "keyUp", "value": string(k)})
	}
	b.call("POST", "/actions", map[string]any{"actions": []any{map[string]any{"type": "key", "id": "keyboard", "actions": acts}}}, nil)
}

// syncBuffer is a log sink the web console's goroutines share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func jsonLogger(w io.Writer) *zap.Logger {
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(w), zap.InfoLevel))
}

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }

// BenchmarkConsoleBridge measures the web console's WebSocket bridge with
// full-screen redraws in raw encoding (the most bytes a redraw can take),
// against the same redraws straight from QEMU's socket, and the process's
// RSS with one and with five viewers attached.
//
//	cd integration && go test -run '^$' -bench ConsoleBridge -benchtime 50x .
func BenchmarkConsoleBridge(b *testing.B) {
	needGuestB(b)
	sock := startForBench(b)
	disp := socketDisplay(sock)
	cert, _, err := certs.Load(certs.Source{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := webconsole.Listen(webconsole.Config{Addr: "127.0.0.1:0", Username: "u", Password: "p",
		Dir: "/usr/share/novnc", TLS: certs.ServerConfig(cert), VM: disp, Log: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	viewer := func() net.Conn {
		h := http.Header{}
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("u:p")))
		ws, _, err := websocket.Dial(context.Background(), "wss://"+srv.Addr().String()+"/websockify", &websocket.DialOptions{
			HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}}, HTTPHeader: h})
		if err != nil {
			b.Fatal(err)
		}
		ws.SetReadLimit(-1)
		return websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	}
	for _, bc := range []struct {
		name string
		dial func() net.Conn
	}{
		{"direct", func() net.Conn {
			c, err := net.Dial("unix", sock)
			if err != nil {
				b.Fatal(err)
			}
			return c
		}},
		{"bridge", viewer},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := bc.dial()
			defer c.Close()
			r := newRFB(b, c)
			b.SetBytes(int64(r.redraw()))
			b.ResetTimer()
			for range b.N {
				r.redraw()
			}
		})
	}
	b.Run("rss", func(b *testing.B) {
		for range b.N {
		}
		base := rssKiB(b)
		var conns []net.Conn
		for i := 1; i <= 5; i++ {
			c := viewer()
			conns = append(conns, c)
			newRFB(b, c).redraw()
			if i == 1 || i == 5 {
				b.ReportMetric(float64(rssKiB(b)-base)/1024, fmt.Sprintf("MiB-more-with-%d-viewers", i))
			}
		}
		b.ReportMetric(float64(base)/1024, "MiB-before")
		for _, c := range conns {
			c.Close()
		}
	})
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }
func be32(b []byte) uint32 { return uint32(be16(b))<<16 | uint32(be16(b[2:])) }

// socketDisplay is a VM that runs and shows the display at sock.
type socketDisplay string

func (socketDisplay) Status() controller.Status { return controller.Status{Power: controller.Running} }

func (s socketDisplay) DialDisplay(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", string(s))
}

// startForBench runs vmrunner with the test guest and a display (the
// harness's Start takes a *testing.T) and returns the display socket.
func startForBench(b *testing.B) string {
	data := b.TempDir()
	cmd := exec.Command(binary)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"KERNEL=" + filepath.Join(guestDir, "vmlinuz"), "INITRD=" + filepath.Join(guestDir, "initrd.gz"),
		"KERNEL_CMDLINE=console=tty0 console=ttyS0 quiet vmtest.screen=1", "ACCEL=tcg", "BOOT_MODE=legacy",
		"MEMORY=512", "CPUS=1", "DATA_DIR=" + data, "GUEST_NAME=bench", "NETWORK_MODE=none", "CLOUD_INIT=0",
		"GRAPHICS=vnc", "VNC_LISTEN=127.0.0.1", "VNC_PORT=" + fmt.Sprint(5900+50+os.Getpid()%1000), "LOG_FORMAT=json"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VMTEST ready") {
			go io.Copy(io.Discard, out)
			return filepath.Join(data, "vms", "bench", "vnc", "web.sock")
		}
	}
	b.Fatal("the guest ended before it was ready")
	return ""
}

func needGuestB(b *testing.B) {
	if _, err := os.Stat(filepath.Join(guestDir, "initrd.gz")); err != nil || !haveQEMU() {
		b.Skip("needs QEMU and the test guest")
	}
}

func rssKiB(b *testing.B) int {
	runtime.GC()
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int
			fmt.Sscan(v, &kb)
			return kb
		}
	}
	return 0
}

// rfb is a minimal RFB 3.8 client without auth (the display socket) that
// asks for whole-screen raw redraws.
type rfb struct {
	b    *testing.B
	c    net.Conn
	r    *bufio.Reader
	w, h int
	bpp  int
}

func newRFB(b *testing.B, c net.Conn) *rfb {
	rd := bufio.NewReaderSize(c, 1<<16)
	full := func(n int) []byte {
		buf := make([]byte, n)
		if _, err := io.ReadFull(rd, buf); err != nil {
			b.Fatal(err)
		}
		return buf
	}
	full(12)
	c.Write([]byte("RFB 003.008\n"))
	n := full(1)[0]
	full(int(n))
	c.Write([]byte{1}) // None: the socket's folder is the lock
	full(4)
	c.Write([]byte{1}) // shared
	init := full(24)
	full(int(be32(init[20:])))
	r := &rfb{b: b, c: c, r: rd, w: int(be16(init[0:])), h: int(be16(init[2:])), bpp: int(init[4]) / 8}
	c.Write([]byte{2, 0, 0, 1, 0, 0, 0, 0}) // SetEncodings: raw only
	return r
}

// redraw asks for the whole screen and reads it; it returns the bytes read.
func (r *rfb) redraw() int {
	req := []byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	req[6], req[7], req[8], req[9] = byte(r.w>>8), byte(r.w), byte(r.h>>8), byte(r.h)
	if _, err := r.c.Write(req); err != nil {
		r.b.Fatal(err)
	}
	total, area := 0, 0
	for area < r.w*r.h {
		hdr := make([]byte, 4)
		if _, err := io.ReadFull(r.r, hdr); err != nil {
			r.b.Fatal(err)
		}
		if hdr[0] != 0 {
			r.b.Fatalf("server message %d, want a framebuffer update", hdr[0])
		}
		total += 4
		for range be16(hdr[2:]) {
			rect := make([]byte, 12)
			if _, err := io.ReadFull(r.r, rect); err != nil {
				r.b.Fatal(err)
			}
			w, h := int(be16(rect[4:])), int(be16(rect[6:]))
			if enc := int32(be32(rect[8:])); enc != 0 {
				r.b.Fatalf("encoding %d, want raw", enc)
			}
			n, err := io.CopyN(io.Discard, r.r, int64(w*h*r.bpp))
			if err != nil {
				r.b.Fatal(err)
			}
			total += 12 + int(n)
			area += w * h
		}
	}
	return total
}
