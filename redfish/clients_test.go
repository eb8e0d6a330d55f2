package redfish

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmrunner/vmrunner/certs"
)

// The real clients come from Debian: python3-sushy (what Ironic uses),
// python3-sushy-cli and redfishtool. Debian's python is called by its path:
// another python earlier on PATH may lack sushy.
const python = "/usr/bin/python3"

// needClient skips (or fails, under VMRUNNER_REQUIRE_INTEGRATION=1, as in
// CI) when a client is missing; scripts/test-deps.sh installs them.
func needClient(t *testing.T, what string, have func() bool) {
	t.Helper()
	if testing.Short() {
		t.Skip("real Redfish clients are not run with -short")
	}
	if have() {
		return
	}
	msg := "missing prerequisite: " + what + " (scripts/test-deps.sh installs it)"
	if os.Getenv("VMRUNNER_REQUIRE_INTEGRATION") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func havePythonModule(mod string) bool {
	return exec.Command(python, "-c", "import "+mod).Run() == nil
}

func haveCommand(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// serveTLS runs the service over HTTPS on loopback with a self-signed
// certificate from package certs, as vmrunner does, and returns host:port.
func serveTLS(t testing.TB, ts *testService) string {
	t.Helper()
	cert, _, err := certs.Load(certs.Source{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, ts.h, cert, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

// clientEnv is the environment of a client: no proxy between it and
// loopback, and no CA bundle variables, which python-requests lets override
// verify=False (what Ironic's redfish_verify_ca=false sets).
func clientEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "NO_PROXY=*", "no_proxy=*", "PYTHONWARNINGS=ignore")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = clientEnv()
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

func TestServeTLS(t *testing.T) {
	ts := newTestService(t)
	addr := serveTLS(t, ts)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	res, err := c.Get("https://" + addr + "/redfish/v1/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.TLS == nil || res.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("GET over HTTPS: %d, TLS %v", res.StatusCode, res.TLS)
	}
	// Plain HTTP on the TLS port gets no Redfish answer.
	res, err = http.Get("http://" + addr + "/redfish/v1/Systems")
	if err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP: %d", res.StatusCode)
		}
	}
}

// TestSushyAsIronic drives the service with sushy as Ironic's redfish
// driver does, with each of Ironic's auth types.
func TestSushyAsIronic(t *testing.T) {
	needClient(t, "python3-sushy", func() bool { return havePythonModule("sushy") })
	for _, mode := range []string{"auto", "session", "basic"} {
		t.Run(mode, func(t *testing.T) {
			ts := newTestService(t)
			addr := serveTLS(t, ts)
			const image = "http://192.0.2.10/ipa/ipa.iso"
			out := run(t, python, "testdata/ironic.py", "https://"+addr, testUser, testPass, mode, image)
			var seen struct {
				RedfishVersion string   `json:"redfish_version"`
				OnlySystem     string   `json:"only_system"`
				Power          []string `json:"power"`
				SystemUUID     string   `json:"system_uuid"`
				Firmware       string   `json:"firmware"`
				Media          struct {
					Image    string
					Inserted bool
				}
				Boot, Boot2     []string
				MediaAfterEject bool    `json:"media_after_eject"`
				MemoryGiB       float64 `json:"memory_gib"`
				CPUs            int
				Arch            string
				MACs            []string
				BadReset        string `json:"bad_reset"`
				FileURL         int    `json:"file_url"`
			}
			if err := json.Unmarshal([]byte(out), &seen); err != nil {
				t.Fatalf("ironic.py output: %v\n%s", err, out)
			}
			t.Logf("sushy saw: %s", out)
			checks := []struct {
				what      string
				got, want any
			}{
				{"RedfishVersion", seen.RedfishVersion, "1.6.0"},
				{"system", seen.OnlySystem, "node1"},
				{"power states", strings.Join(seen.Power, " "), "on off on on on off on"},
				{"UUID", seen.SystemUUID, ts.vm.Status().UUID},
				{"firmware", seen.Firmware, "v1.2.3"},
				{"media", seen.Media.Image + " " + strings.ToLower(strings.TrimSpace(jsonBool(seen.Media.Inserted))), image + " true"},
				{"boot", strings.Join(seen.Boot, " "), "cd once uefi"},
				{"ejected", seen.MediaAfterEject, false},
				{"boot2", strings.Join(seen.Boot2, " "), "pxe continuous legacy"},
				{"memory", seen.MemoryGiB, 2.0},
				{"cpus", seen.CPUs, 2},
				{"arch", seen.Arch, "x86"},
				{"macs", strings.Join(seen.MACs, " "), "52:54:00:12:34:01 52:54:00:12:34:02"},
				{"bad reset", seen.BadReset, "InvalidParameterValueError"},
				{"file:// image", seen.FileURL, 400},
			}
			for _, c := range checks {
				if !strings.EqualFold(jsonString(c.got), jsonString(c.want)) {
					t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
				}
			}
			wantCalls := []string{"PowerOff false", "PowerOn", "Reset", "Reboot", "PowerOff true", "PowerOn",
				"InsertMedia " + image, "SetBoot cd true", "Reset", "EjectMedia", "SetBootMode legacy", "SetBoot network false"}
			if got := ts.vm.Calls(); !slices.Equal(got, wantCalls) {
				t.Errorf("controller calls\n got %q\nwant %q", got, wantCalls)
			}
			// Session auth logs out when the client lets go of the connection.
			if mode != "basic" {
				if ids := ts.h.(*service).sessions.ids(); len(ids) != 0 {
					t.Errorf("sessions left open by sushy: %v", ids)
				}
			}
			for _, e := range ts.logs.All() {
				if f := e.ContextMap(); f["status"].(int64) >= 500 {
					t.Errorf("server error: %v", f)
				}
			}
		})
	}
}

func jsonBool(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSushyBadCredentials: a wrong password gives sushy an access error,
// not a crash or a hang.
func TestSushyBadCredentials(t *testing.T) {
	needClient(t, "python3-sushy", func() bool { return havePythonModule("sushy") })
	ts := newTestService(t)
	addr := serveTLS(t, ts)
	script := `import sys, sushy
try:
    sushy.Sushy(sys.argv[1], username='admin', password='wrong', verify=False).get_system()
except sushy.exceptions.AccessError as e:
    print('AccessError', e.status_code)
`
	out := run(t, python, "-c", script, "https://"+addr)
	if strings.TrimSpace(out) != "AccessError 401" {
		t.Errorf("sushy with a wrong password: %q", out)
	}
}

func TestRedfishtool(t *testing.T) {
	needClient(t, "redfishtool", func() bool { return haveCommand("redfishtool") })
	ts := newTestService(t)
	addr := serveTLS(t, ts)
	base := []string{"-r", addr, "-u", testUser, "-p", testPass, "-S", "Always"}
	rt := func(args ...string) string { return run(t, "redfishtool", append(slices.Clone(base), args...)...) }

	out := rt("Systems", "-I", "node1", "get")
	var sys map[string]any
	if err := json.Unmarshal([]byte(out), &sys); err != nil || sys["PowerState"] != "On" {
		t.Fatalf("Systems get: %v\n%s", err, out)
	}
	rt("Systems", "-I", "node1", "reset", "ForceOff")
	rt("Systems", "-I", "node1", "reset", "On")
	rt("Systems", "-I", "node1", "setBootOverride", "Once", "Pxe")
	rt("-A", "Session", "Systems", "-I", "node1", "reset", "GracefulRestart")
	want := []string{"PowerOff false", "PowerOn", "SetBoot network true", "Reboot"}
	if got := ts.vm.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	out = rt("Systems", "-I", "node1", "get", "-P", "Boot")
	if !strings.Contains(out, `"BootSourceOverrideTarget": "None"`) {
		// The fake clears a Once override at the reboot, as the controller does.
		t.Errorf("Boot after the reboot:\n%s", out)
	}
}

func TestSushyCLI(t *testing.T) {
	needClient(t, "sushycli (python3-sushy-cli)", func() bool { return haveCommand("sushycli") })
	ts := newTestService(t)
	addr := serveTLS(t, ts)
	base := []string{"--service-endpoint", "https://" + addr, "--username", testUser, "--password", testPass, "--insecure"}
	sc := func(args ...string) string { return run(t, "sushycli", append(args, base...)...) }
	if out := sc("system", "list", "-f", "value"); !strings.Contains(out, "node1") {
		t.Errorf("system list:\n%s", out)
	}
	sc("system", "power", "--system-id", sysPath, "off")
	if out := sc("system", "power", "show", "--system-id", sysPath, "-f", "value"); !strings.Contains(strings.ToLower(out), "off") {
		t.Errorf("power show after off:\n%s", out)
	}
	// Not "system boot set": sushycli 0.4 hands sushy 4.3 lower-case names
	// its enums refuse, before any request is sent.
	const image = "https://192.0.2.10/boot.iso"
	sc("manager", "vmedia", "insert", "--device-id", cdPath, "--image", image)
	if out := sc("manager", "vmedia", "list", "--manager-id", "/redfish/v1/Managers/BMC", "-f", "value"); !strings.Contains(out, "Cd") {
		t.Errorf("vmedia list:\n%s", out)
	}
	sc("manager", "vmedia", "eject", "--device-id", cdPath)
	t.Logf("controller calls: %q", ts.vm.Calls())
	want := []string{"PowerOff false", "InsertMedia " + image, "EjectMedia"}
	if got := ts.vm.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}
