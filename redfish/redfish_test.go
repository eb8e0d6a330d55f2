package redfish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/image"
)

const (
	testUser = "admin"
	testPass = "s3cret-Pass"
	sysPath  = "/redfish/v1/Systems/node1"
	cdPath   = "/redfish/v1/Managers/BMC/VirtualMedia/Cd"
)

type testService struct {
	vm   *fakeVM
	h    http.Handler
	logs *observer.ObservedLogs
	now  time.Time
	mu   sync.Mutex
}

func newTestService(t testing.TB) *testService {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	ts := &testService{vm: newFakeVM(), logs: logs, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	ts.h = New(ts.vm, Options{
		Username: testUser, Password: testPass, SystemID: "node1", Version: "v1.2.3",
		Log: zap.New(core), SessionTimeout: time.Minute, MaxSessions: 3,
		Now: func() time.Time { ts.mu.Lock(); defer ts.mu.Unlock(); return ts.now },
	})
	return ts
}

func (ts *testService) advance(d time.Duration) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.now = ts.now.Add(d)
}

type auth func(*http.Request)

func basic(u, p string) auth { return func(r *http.Request) { r.SetBasicAuth(u, p) } }
func token(tok string) auth  { return func(r *http.Request) { r.Header.Set("X-Auth-Token", tok) } }

var (
	good   = basic(testUser, testPass)
	noAuth = func(*http.Request) {}
)

// do makes one request and returns the response with its body read.
func (ts *testService) do(method, path string, a auth, body string, hdr ...string) (*http.Response, []byte) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	a(req)
	rec := httptest.NewRecorder()
	ts.h.ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, b)
	}
	return m
}

// get walks a decoded document along keys.
func get(m any, keys ...string) any {
	for _, k := range keys {
		mm, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = mm[k]
	}
	return m
}

// messageID returns the first ExtendedInfo MessageId of an error body.
func messageID(t testing.TB, b []byte) (id, msg string) {
	t.Helper()
	m := decode(t, b)
	info, _ := get(m, "error", "@Message.ExtendedInfo").([]any)
	if len(info) == 0 {
		t.Fatalf("no error.@Message.ExtendedInfo in %s", b)
	}
	id, _ = get(info[0], "MessageId").(string)
	msg, _ = get(m, "error", "message").(string)
	if !strings.HasPrefix(id, "Base.1.") {
		t.Errorf("MessageId %q is not from the Base registry", id)
	}
	return id, msg
}

func TestAuthRequired(t *testing.T) {
	ts := newTestService(t)
	tests := []struct {
		method, path string
		a            auth
		want         int
	}{
		{"GET", "/redfish", noAuth, 200},
		{"GET", "/redfish/v1", noAuth, 200},
		{"GET", "/redfish/v1/", noAuth, 200},
		{"HEAD", "/redfish/v1/", noAuth, 200},
		{"GET", "/redfish/v1/$metadata", noAuth, 200},
		{"GET", "/redfish/v1/odata", noAuth, 200},
		{"GET", "/redfish/v1/Systems", noAuth, 401},
		{"GET", sysPath, noAuth, 401},
		{"POST", sysPath + "/Actions/ComputerSystem.Reset", noAuth, 401},
		{"GET", "/redfish/v1/SessionService/Sessions", noAuth, 401},
		{"GET", "/redfish/v1/Nowhere", noAuth, 401}, // says nothing about what exists
		{"GET", sysPath, basic(testUser, "wrong"), 401},
		{"GET", sysPath, basic("root", testPass), 401},
		{"GET", sysPath, basic(testUser, ""), 401},
		{"GET", sysPath, token("made-up"), 401},
		{"GET", sysPath, good, 200},
		{"GET", "/redfish/v1/Nowhere", good, 404},
		{"GET", "/redfish/v1/Systems/other", good, 404},
		{"GET", "/", good, 404},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			res, b := ts.do(tc.method, tc.path, tc.a, "")
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.want, b)
			}
			if res.Header.Get("OData-Version") != "4.0" {
				t.Errorf("OData-Version header %q", res.Header.Get("OData-Version"))
			}
			switch tc.want {
			case 401:
				if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic ") {
					t.Errorf("401 without WWW-Authenticate: %v", res.Header)
				}
				if id, _ := messageID(t, b); id != "Base.1.8.NoValidSession" {
					t.Errorf("MessageId %s", id)
				}
			case 404:
				if id, msg := messageID(t, b); id != "Base.1.8.ResourceMissingAtURI" || !strings.Contains(msg, tc.path) {
					t.Errorf("404: %s %q", id, msg)
				}
			}
		})
	}
	if calls := ts.vm.Calls(); len(calls) != 0 {
		t.Errorf("refused requests reached the controller: %v", calls)
	}
}

func TestServiceRootAndMetadata(t *testing.T) {
	ts := newTestService(t)
	res, b := ts.do("GET", "/redfish/v1/", noAuth, "")
	m := decode(t, b)
	if v := m["RedfishVersion"]; v != "1.6.0" {
		t.Errorf("RedfishVersion %v", v)
	}
	if u, _ := m["UUID"].(string); len(u) != 36 {
		t.Errorf("UUID %q", u)
	}
	for k, want := range map[string]string{
		"Systems": "/redfish/v1/Systems", "Managers": "/redfish/v1/Managers", "Chassis": "/redfish/v1/Chassis",
		"SessionService": "/redfish/v1/SessionService",
	} {
		if got := get(m, k, "@odata.id"); got != want {
			t.Errorf("%s link %v, want %s", k, got, want)
		}
	}
	if got := get(m, "Links", "Sessions", "@odata.id"); got != "/redfish/v1/SessionService/Sessions" {
		t.Errorf("Links.Sessions %v", got)
	}
	if m["@odata.etag"] != res.Header.Get("ETag") || res.Header.Get("ETag") == "" {
		t.Errorf("@odata.etag %v, ETag header %q", m["@odata.etag"], res.Header.Get("ETag"))
	}
	if m["@odata.type"] != "#ServiceRoot.v1_5_0.ServiceRoot" || m["@odata.id"] != "/redfish/v1/" {
		t.Errorf("@odata.type/id %v %v", m["@odata.type"], m["@odata.id"])
	}
	// The UUID is stable: the same VM gives the same service UUID.
	_, b2 := newTestService(t).do("GET", "/redfish/v1/", noAuth, "")
	if decode(t, b2)["UUID"] != m["UUID"] {
		t.Error("service UUID changes between instances")
	}

	res, b = ts.do("GET", "/redfish/v1/$metadata", noAuth, "")
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "application/xml") {
		t.Errorf("$metadata Content-Type %q", res.Header.Get("Content-Type"))
	}
	// Every namespace an @odata.type of the service names is referenced.
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if typ, ok := v["@odata.type"].(string); ok {
				ns := strings.TrimPrefix(typ[:strings.LastIndex(typ, ".")], "#")
				if !bytes.Contains(b, []byte(`Namespace="`+ns+`"`)) {
					t.Errorf("$metadata lacks %s", ns)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	for _, p := range []string{"/redfish/v1/", sysPath, "/redfish/v1/Managers/BMC", cdPath, "/redfish/v1/Chassis/node1",
		"/redfish/v1/SessionService", sysPath + "/EthernetInterfaces/1", sysPath + "/SecureBoot", sysPath + "/Processors/CPU1", sysPath + "/ResetActionInfo"} {
		_, body := ts.do("GET", p, good, "")
		walk(decode(t, body))
	}
	_, body := ts.do("GET", "/redfish/v1/odata", noAuth, "")
	if v, _ := decode(t, body)["value"].([]any); len(v) < 5 {
		t.Errorf("odata service document: %s", body)
	}
}

func TestSystemDocument(t *testing.T) {
	ts := newTestService(t)
	_, b := ts.do("GET", "/redfish/v1/Systems", good, "")
	if ms, _ := decode(t, b)["Members"].([]any); len(ms) != 1 || get(ms[0], "@odata.id") != sysPath {
		t.Fatalf("Systems members: %s", b)
	}
	_, b = ts.do("GET", sysPath, good, "")
	m := decode(t, b)
	checks := map[string]any{
		"Id": "node1", "UUID": "8f3c2a10-5b6e-4c1d-9a7f-0e2d4b6c8a10", "PowerState": "On",
		"Status/State": "Enabled", "Boot/BootSourceOverrideEnabled": "Disabled",
		"Boot/BootSourceOverrideTarget": "None", "Boot/BootSourceOverrideMode": "UEFI",
		"MemorySummary/TotalSystemMemoryGiB": 2.0, "ProcessorSummary/Count": 2.0,
		"Links/ManagedBy":                      []any{map[string]any{"@odata.id": "/redfish/v1/Managers/BMC"}},
		"Links/Chassis":                        []any{map[string]any{"@odata.id": "/redfish/v1/Chassis/node1"}},
		"EthernetInterfaces":                   map[string]any{"@odata.id": sysPath + "/EthernetInterfaces"},
		"Actions/#ComputerSystem.Reset/target": sysPath + "/Actions/ComputerSystem.Reset",
	}
	for k, want := range checks {
		if got := get(m, strings.Split(k, "/")...); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	allowed := func(keys ...string) []string {
		var out []string
		for _, v := range get(m, keys...).([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	if got := allowed("Boot", "BootSourceOverrideTarget@Redfish.AllowableValues"); !slices.Equal(got, []string{"None", "Pxe", "Hdd", "Cd"}) {
		t.Errorf("target allowable values %v", got)
	}
	if got := allowed("Actions", "#ComputerSystem.Reset", "ResetType@Redfish.AllowableValues"); !slices.Equal(got, resetTypes) {
		t.Errorf("ResetType allowable values %v", got)
	}

	_, b = ts.do("GET", sysPath+"/EthernetInterfaces", good, "")
	if n := decode(t, b)["Members@odata.count"]; n != 2.0 {
		t.Errorf("NIC count %v", n)
	}
	_, b = ts.do("GET", sysPath+"/EthernetInterfaces/2", good, "")
	if mac := decode(t, b)["MACAddress"]; mac != "52:54:00:12:34:02" {
		t.Errorf("NIC 2 MAC %v", mac)
	}
	if res, _ := ts.do("GET", sysPath+"/EthernetInterfaces/3", good, ""); res.StatusCode != 404 {
		t.Errorf("NIC 3: %d", res.StatusCode)
	}

	for power, want := range map[controller.PowerState]string{
		controller.Off: "Off", controller.Starting: "PoweringOn", controller.Paused: "On", controller.Stopping: "PoweringOff",
	} {
		ts.vm.set(func(s *controller.Status) { s.Power = power })
		_, b = ts.do("GET", sysPath, good, "")
		if got := decode(t, b)["PowerState"]; got != want {
			t.Errorf("power %s: PowerState %v, want %s", power, got, want)
		}
	}

	_, b = ts.do("GET", "/redfish/v1/Managers/BMC", good, "")
	if v := decode(t, b)["FirmwareVersion"]; v != "v1.2.3" {
		t.Errorf("FirmwareVersion %v", v)
	}
}

func TestReset(t *testing.T) {
	tests := []struct {
		name   string
		power  controller.PowerState
		body   string
		status int
		calls  []string
		after  controller.PowerState
		msgID  string
	}{
		{"on", controller.Off, `{"ResetType":"On"}`, 204, []string{"PowerOn"}, controller.Running, ""},
		{"force off", controller.Running, `{"ResetType":"ForceOff"}`, 204, []string{"PowerOff false"}, controller.Off, ""},
		{"graceful", controller.Running, `{"ResetType":"GracefulShutdown"}`, 204, []string{"PowerOff true"}, controller.Off, ""},
		{"graceful restart", controller.Running, `{"ResetType":"GracefulRestart"}`, 204, []string{"Reboot"}, controller.Running, ""},
		{"force restart", controller.Running, `{"ResetType":"ForceRestart"}`, 204, []string{"Reset"}, controller.Running, ""},
		{"power cycle", controller.Running, `{"ResetType":"PowerCycle"}`, 204, []string{"PowerOff false", "PowerOn"}, controller.Running, ""},
		{"power cycle from off", controller.Off, `{"ResetType":"PowerCycle"}`, 204, []string{"PowerOff false", "PowerOn"}, controller.Running, ""},
		{"nmi", controller.Running, `{"ResetType":"Nmi"}`, 204, []string{"NMI"}, controller.Running, ""},
		{"nmi while off", controller.Off, `{"ResetType":"Nmi"}`, 409, []string{"NMI"}, controller.Off, "Base.1.8.GeneralError"},
		{"on while on", controller.Running, `{"ResetType":"On"}`, 409, []string{"PowerOn"}, controller.Running, "Base.1.8.GeneralError"},
		{"unknown type", controller.Running, `{"ResetType":"PushPowerButton"}`, 400, nil, controller.Running, "Base.1.8.ActionParameterValueNotInList"},
		{"lower case", controller.Running, `{"ResetType":"on"}`, 400, nil, controller.Running, "Base.1.8.ActionParameterValueNotInList"},
		{"number", controller.Running, `{"ResetType":1}`, 400, nil, controller.Running, "Base.1.8.ActionParameterValueTypeError"},
		{"missing", controller.Running, `{}`, 400, nil, controller.Running, "Base.1.8.ActionParameterMissing"},
		{"no body", controller.Running, ``, 400, nil, controller.Running, "Base.1.8.ActionParameterMissing"},
		{"extra", controller.Running, `{"ResetType":"On","Force":true}`, 400, nil, controller.Running, "Base.1.8.ActionParameterUnknown"},
		{"bad json", controller.Running, `{"ResetType":`, 400, nil, controller.Running, "Base.1.8.MalformedJSON"},
		{"array", controller.Running, `["On"]`, 400, nil, controller.Running, "Base.1.8.MalformedJSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestService(t)
			ts.vm.set(func(s *controller.Status) { s.Power = tc.power })
			res, b := ts.do("POST", sysPath+"/Actions/ComputerSystem.Reset", good, tc.body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, b)
			}
			if got := ts.vm.Calls(); !slices.Equal(got, tc.calls) {
				t.Errorf("calls %v, want %v", got, tc.calls)
			}
			if got := ts.vm.Status().Power; got != tc.after {
				t.Errorf("power %s, want %s", got, tc.after)
			}
			if tc.msgID != "" {
				if id, msg := messageID(t, b); id != tc.msgID {
					t.Errorf("MessageId %s, want %s (%s)", id, tc.msgID, msg)
				} else if id == "Base.1.8.ActionParameterValueNotInList" && !strings.Contains(msg, "GracefulRestart") {
					t.Errorf("message does not list the allowed values: %s", msg)
				}
			}
		})
	}
}

func TestPatchBoot(t *testing.T) {
	type boot struct{ enabled, target, mode string }
	tests := []struct {
		name   string
		start  controller.BootOverride
		body   string
		status int
		calls  []string
		want   boot
		msg    string // part of the error message
	}{
		{"pxe once", controller.BootOverride{}, `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}`,
			200, []string{"SetBoot network true"}, boot{"Once", "Pxe", "UEFI"}, ""},
		{"cd continuous", controller.BootOverride{}, `{"Boot":{"BootSourceOverrideTarget":"Cd","BootSourceOverrideEnabled":"Continuous"}}`,
			200, []string{"SetBoot cd false"}, boot{"Continuous", "Cd", "UEFI"}, ""},
		{"target only keeps Once", controller.BootOverride{Device: controller.BootCD, Once: true}, `{"Boot":{"BootSourceOverrideTarget":"Hdd"}}`,
			200, []string{"SetBoot disk true"}, boot{"Once", "Hdd", "UEFI"}, ""},
		{"disable", controller.BootOverride{Device: controller.BootCD}, `{"Boot":{"BootSourceOverrideEnabled":"Disabled"}}`,
			200, []string{"SetBoot  false"}, boot{"Disabled", "None", "UEFI"}, ""},
		{"target none", controller.BootOverride{Device: controller.BootCD}, `{"Boot":{"BootSourceOverrideTarget":"None"}}`,
			200, []string{"SetBoot  false"}, boot{"Disabled", "None", "UEFI"}, ""},
		{"no change", controller.BootOverride{Device: controller.BootNetwork, Once: true}, `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}`,
			200, nil, boot{"Once", "Pxe", "UEFI"}, ""},
		{"legacy", controller.BootOverride{}, `{"Boot":{"BootSourceOverrideMode":"Legacy"}}`,
			200, []string{"SetBootMode legacy"}, boot{"Disabled", "None", "Legacy"}, ""},
		{"mode and target", controller.BootOverride{}, `{"Boot":{"BootSourceOverrideMode":"Legacy","BootSourceOverrideTarget":"Hdd","BootSourceOverrideEnabled":"Continuous"}}`,
			200, []string{"SetBootMode legacy", "SetBoot disk false"}, boot{"Continuous", "Hdd", "Legacy"}, ""},
		{"empty", controller.BootOverride{}, `{}`, 200, nil, boot{"Disabled", "None", "UEFI"}, ""},
		{"bad target", controller.BootOverride{}, `{"Boot":{"BootSourceOverrideTarget":"Floppy"}}`,
			400, nil, boot{"Disabled", "None", "UEFI"}, "None, Pxe, Hdd, Cd"},
		{"bad enabled", controller.BootOverride{}, `{"Boot":{"BootSourceOverrideEnabled":"Always"}}`,
			400, nil, boot{"Disabled", "None", "UEFI"}, "Disabled, Once, Continuous"},
		{"bad mode", controller.BootOverride{}, `{"Boot":{"BootSourceOverrideMode":"BIOS"}}`,
			400, nil, boot{"Disabled", "None", "UEFI"}, "UEFI, Legacy"},
		{"unknown in Boot", controller.BootOverride{}, `{"Boot":{"BootNext":"0001"}}`,
			400, nil, boot{"Disabled", "None", "UEFI"}, "Boot/BootNext"},
		{"unknown top", controller.BootOverride{}, `{"AssetTag":"x"}`,
			400, nil, boot{"Disabled", "None", "UEFI"}, "AssetTag"},
		{"read only", controller.BootOverride{}, `{"PowerState":"Off"}`,
			400, nil, boot{"Disabled", "None", "UEFI"}, "PowerState"},
		{"wrong type", controller.BootOverride{}, `{"Boot":{"BootSourceOverrideTarget":["Pxe"]}}`,
			400, nil, boot{"Disabled", "None", "UEFI"}, "BootSourceOverrideTarget"},
		{"Boot not object", controller.BootOverride{}, `{"Boot":"Pxe"}`,
			400, nil, boot{"Disabled", "None", "UEFI"}, "Boot"},
		{"Boot null", controller.BootOverride{}, `{"Boot":null}`,
			400, nil, boot{"Disabled", "None", "UEFI"}, "Boot"},
		{"nothing applied when one is bad", controller.BootOverride{}, `{"Boot":{"BootSourceOverrideMode":"Legacy","BootSourceOverrideTarget":"Usb"}}`,
			400, nil, boot{"Disabled", "None", "UEFI"}, "Usb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestService(t)
			ts.vm.set(func(s *controller.Status) { s.Boot = tc.start })
			res, b := ts.do("PATCH", sysPath, good, tc.body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, b)
			}
			if tc.msg != "" {
				if _, msg := messageID(t, b); !strings.Contains(msg, tc.msg) {
					t.Errorf("message %q does not name %q", msg, tc.msg)
				}
			}
			if got := ts.vm.Calls(); !slices.Equal(got, tc.calls) {
				t.Errorf("calls %q, want %q", got, tc.calls)
			}
			_, b = ts.do("GET", sysPath, good, "")
			m := decode(t, b)
			got := boot{fmt.Sprint(get(m, "Boot", "BootSourceOverrideEnabled")), fmt.Sprint(get(m, "Boot", "BootSourceOverrideTarget")),
				fmt.Sprint(get(m, "Boot", "BootSourceOverrideMode"))}
			if got != tc.want {
				t.Errorf("Boot %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPatchETag(t *testing.T) {
	ts := newTestService(t)
	res, _ := ts.do("GET", sysPath, good, "")
	tag := res.Header.Get("ETag")
	body := `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Continuous"}}`
	if res, b := ts.do("PATCH", sysPath, good, body, "If-Match", `W/"0000000000000000"`); res.StatusCode != 412 {
		t.Fatalf("stale If-Match: %d %s", res.StatusCode, b)
	} else if id, _ := messageID(t, b); id != "Base.1.8.PreconditionFailed" {
		t.Errorf("MessageId %s", id)
	}
	if calls := ts.vm.Calls(); len(calls) != 0 {
		t.Fatalf("a refused PATCH reached the controller: %v", calls)
	}
	res, b := ts.do("PATCH", sysPath, good, body, "If-Match", tag)
	if res.StatusCode != 200 {
		t.Fatalf("matching If-Match: %d %s", res.StatusCode, b)
	}
	newTag := res.Header.Get("ETag")
	if newTag == tag || decode(t, b)["@odata.etag"] != newTag {
		t.Errorf("ETag after PATCH %q (before %q), body %v", newTag, tag, decode(t, b)["@odata.etag"])
	}
	// The old tag is stale now; its strong form and * are handled too.
	if res, _ := ts.do("PATCH", sysPath, good, body, "If-Match", tag); res.StatusCode != 412 {
		t.Errorf("old tag: %d", res.StatusCode)
	}
	if res, _ := ts.do("PATCH", sysPath, good, body, "If-Match", strings.TrimPrefix(newTag, "W/")); res.StatusCode != 200 {
		t.Errorf("strong form of the tag: %d", res.StatusCode)
	}
	if res, _ := ts.do("PATCH", sysPath, good, body, "If-Match", "*"); res.StatusCode != 200 {
		t.Errorf("If-Match *: %d", res.StatusCode)
	}
}

func TestVirtualMedia(t *testing.T) {
	ts := newTestService(t)
	_, b := ts.do("GET", "/redfish/v1/Managers/BMC/VirtualMedia", good, "")
	if get(decode(t, b), "Members") == nil {
		t.Fatalf("VirtualMedia collection: %s", b)
	}
	_, b = ts.do("GET", cdPath, good, "")
	m := decode(t, b)
	if m["Inserted"] != false || fmt.Sprint(m["MediaTypes"]) != "[CD DVD]" {
		t.Errorf("empty Cd: %s", b)
	}
	insert := cdPath + "/Actions/VirtualMedia.InsertMedia"
	const img = "https://images.example.test/boot/ipa.iso"
	res, b := ts.do("POST", insert, good, `{"Image":"`+img+`","Inserted":true,"WriteProtected":true,"TransferProtocolType":"HTTPS"}`)
	if res.StatusCode != 204 {
		t.Fatalf("insert: %d %s", res.StatusCode, b)
	}
	_, b = ts.do("GET", cdPath, good, "")
	m = decode(t, b)
	if m["Image"] != img || m["Inserted"] != true || m["ImageName"] != "ipa.iso" || m["ConnectedVia"] != "URI" {
		t.Errorf("inserted Cd: %s", b)
	}
	if res, b := ts.do("POST", cdPath+"/Actions/VirtualMedia.EjectMedia", good, `{}`); res.StatusCode != 204 {
		t.Fatalf("eject: %d %s", res.StatusCode, b)
	}
	if want := []string{"InsertMedia " + img, "EjectMedia"}; !slices.Equal(ts.vm.Calls(), want) {
		t.Errorf("calls %v, want %v", ts.vm.Calls(), want)
	}

	bad := []struct{ body, id, msg string }{
		{`{"Image":"file:///etc/shadow"}`, "ActionParameterValueFormatError", "http"},
		{`{"Image":"/var/lib/vm/disk.qcow2"}`, "ActionParameterValueFormatError", "http"},
		{`{"Image":"ftp://h/x.iso"}`, "ActionParameterValueFormatError", "http"},
		{`{"Image":"http:///x.iso"}`, "ActionParameterValueFormatError", "no host"},
		{`{"Image":"http://u:p@h/x.iso"}`, "ActionParameterValueFormatError", "credentials"},
		{`{"Image":"http://h/` + strings.Repeat("a", 5000) + `"}`, "ActionParameterValueFormatError", "longer"},
		{`{"Image":"http://h/x.iso","TransferProtocolType":"HTTPS"}`, "ActionParameterValueNotInList", "TransferProtocolType"},
		{`{"Image":"http://h/x.iso","WriteProtected":false}`, "ActionParameterValueNotInList", "read-only"},
		{`{"Image":"http://h/x.iso","Inserted":"yes"}`, "ActionParameterValueTypeError", "Inserted"},
		{`{"Image":"http://h/x.iso","UserName":"u","Password":"p"}`, "ActionParameterValueNotInList", "without credentials"},
		{`{"Image":"http://h/x.iso","TransferMethod":"Upload"}`, "ActionParameterValueNotInList", "Stream"},
		{`{"Image":"http://h/x.iso","Media":"x"}`, "ActionParameterUnknown", "Media"},
		{`{}`, "ActionParameterMissing", "Image"},
	}
	for _, tc := range bad {
		res, b := ts.do("POST", insert, good, tc.body)
		if res.StatusCode != 400 {
			t.Errorf("%s: %d %s", clip(tc.body), res.StatusCode, b)
			continue
		}
		if id, msg := messageID(t, b); id != registry+tc.id || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: %s %q, want %s naming %q", clip(tc.body), id, msg, tc.id, tc.msg)
		}
	}
	if n := len(ts.vm.Calls()); n != 2 {
		t.Errorf("refused inserts reached the controller: %v", ts.vm.Calls())
	}

	// What the controller refuses or fails at comes back as a clear error.
	ts.vm.setFail("InsertMedia", errors.New("image cache: mkdir /data/cache: permission denied"))
	res, b = ts.do("POST", insert, good, `{"Image":"http://192.0.2.1/x.iso"}`)
	if _, msg := messageID(t, b); res.StatusCode != 500 || !strings.Contains(msg, "permission denied") {
		t.Errorf("a fault of the host: %d %q", res.StatusCode, msg)
	}
	ts.vm.setFail("InsertMedia", fmt.Errorf("image larger than the cap: %w", controller.ErrInvalid))
	if res, b = ts.do("POST", insert, good, `{"Image":"http://h/big.iso"}`); res.StatusCode != 400 {
		t.Errorf("ErrInvalid: %d %s", res.StatusCode, b)
	}
	if res, _ = ts.do("POST", cdPath+"/Actions/VirtualMedia.EjectMedia", good, `{"Image":"x"}`); res.StatusCode != 400 {
		t.Errorf("eject with a parameter: %d", res.StatusCode)
	}
}

func TestSessions(t *testing.T) {
	ts := newTestService(t)
	const sessions = "/redfish/v1/SessionService/Sessions"
	login := func(u, p string) *http.Response {
		res, _ := ts.do("POST", sessions, noAuth, fmt.Sprintf(`{"UserName":%q,"Password":%q}`, u, p))
		return res
	}
	if res := login(testUser, "wrong"); res.StatusCode != 401 || res.Header.Get("X-Auth-Token") != "" {
		t.Fatalf("wrong password: %d %v", res.StatusCode, res.Header)
	}
	res := login(testUser, testPass)
	tok, loc := res.Header.Get("X-Auth-Token"), res.Header.Get("Location")
	if res.StatusCode != 201 || len(tok) < 32 || !strings.HasPrefix(loc, sessions+"/") {
		t.Fatalf("login: %d token %d bytes, Location %q", res.StatusCode, len(tok), loc)
	}
	if res, b := ts.do("GET", sysPath, token(tok), ""); res.StatusCode != 200 {
		t.Fatalf("token: %d %s", res.StatusCode, b)
	}
	_, b := ts.do("GET", loc, token(tok), "")
	if decode(t, b)["UserName"] != testUser {
		t.Errorf("session: %s", b)
	}
	_, b = ts.do("GET", sessions, token(tok), "")
	if decode(t, b)["Members@odata.count"] != 1.0 {
		t.Errorf("sessions: %s", b)
	}
	_, b = ts.do("GET", "/redfish/v1/SessionService", token(tok), "")
	if decode(t, b)["SessionTimeout"] != 60.0 {
		t.Errorf("SessionService: %s", b)
	}
	// Logged out, the token is refused.
	if res, _ := ts.do("DELETE", loc, token(tok), ""); res.StatusCode != 204 {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	if res, _ := ts.do("GET", sysPath, token(tok), ""); res.StatusCode != 401 {
		t.Errorf("token after logout: %d", res.StatusCode)
	}
	if res, _ := ts.do("DELETE", loc, good, ""); res.StatusCode != 404 {
		t.Errorf("second logout: %d", res.StatusCode)
	}

	// Idle sessions expire; use keeps one alive.
	tok1 := login(testUser, testPass).Header.Get("X-Auth-Token")
	tok2 := login(testUser, testPass).Header.Get("X-Auth-Token")
	ts.advance(50 * time.Second)
	ts.do("GET", sysPath, token(tok1), "")
	ts.advance(50 * time.Second)
	if res, _ := ts.do("GET", sysPath, token(tok1), ""); res.StatusCode != 200 {
		t.Errorf("used session expired: %d", res.StatusCode)
	}
	if res, b := ts.do("GET", sysPath, token(tok2), ""); res.StatusCode != 401 {
		t.Errorf("idle session still works: %d", res.StatusCode)
	} else if id, _ := messageID(t, b); id != "Base.1.8.NoValidSession" {
		t.Errorf("expired token: %s", id)
	}

	// At most MaxSessions (3) are open at once.
	login(testUser, testPass)
	login(testUser, testPass)
	res, b = ts.do("POST", sessions, noAuth, fmt.Sprintf(`{"UserName":%q,"Password":%q}`, testUser, testPass))
	if res.StatusCode != 503 {
		t.Fatalf("fourth session: %d %s", res.StatusCode, b)
	} else if id, _ := messageID(t, b); id != "Base.1.8.SessionLimitExceeded" {
		t.Errorf("fourth session: %s", id)
	}
	ts.advance(2 * time.Minute)
	if res := login(testUser, testPass); res.StatusCode != 201 {
		t.Errorf("login after the others expired: %d", res.StatusCode)
	}

	for _, body := range []string{`{"UserName":"admin"}`, `{"UserName":"admin","Password":1}`, `{"UserName":"admin","Password":"x","Role":"x"}`, `x`} {
		if res, b := ts.do("POST", sessions, noAuth, body); res.StatusCode != 400 {
			t.Errorf("login %s: %d %s", body, res.StatusCode, b)
		}
	}
}

func TestBadRequests(t *testing.T) {
	ts := newTestService(t)
	reset := sysPath + "/Actions/ComputerSystem.Reset"
	tests := []struct {
		name, method, path, body string
		status                   int
		id                       string
	}{
		{"bad json", "PATCH", sysPath, `{"Boot":`, 400, "MalformedJSON"},
		{"not an object", "PATCH", sysPath, `"Boot"`, 400, "MalformedJSON"},
		{"null", "PATCH", sysPath, `null`, 400, "MalformedJSON"},
		{"trailing garbage", "PATCH", sysPath, `{} {}`, 400, "MalformedJSON"},
		{"deep nesting", "PATCH", sysPath, `{"Boot":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`, 400, "MalformedJSON"},
		{"deep nesting action", "POST", reset, `{"ResetType":` + strings.Repeat(`{"a":`, 50000) + `1` + strings.Repeat("}", 50000) + `}`, 400, "MalformedJSON"},
		{"10 MB body", "POST", reset, `{"ResetType":"` + strings.Repeat("x", 10<<20) + `"}`, 413, "GeneralError"},
		{"10 MB patch", "PATCH", sysPath, strings.Repeat(" ", 10<<20), 413, "GeneralError"},
		{"GET an action", "GET", reset, "", 405, "GeneralError"},
		{"DELETE the system", "DELETE", sysPath, "", 405, "GeneralError"},
		{"POST the system", "POST", sysPath, `{}`, 405, "GeneralError"},
		{"PUT the root", "PUT", "/redfish/v1/Systems", `{}`, 405, "GeneralError"},
		{"POST $metadata", "POST", "/redfish/v1/$metadata", `{}`, 405, "GeneralError"},
		{"POST the service root", "POST", "/redfish/v1/", `{}`, 405, "GeneralError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, b := ts.do(tc.method, tc.path, good, tc.body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, clip(string(b)))
			}
			if id, _ := messageID(t, b); id != registry+tc.id {
				t.Errorf("MessageId %s, want %s", id, tc.id)
			}
			if tc.status == 405 && res.Header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	if calls := ts.vm.Calls(); len(calls) != 0 {
		t.Errorf("bad requests reached the controller: %v", calls)
	}
}

func TestLogLines(t *testing.T) {
	ts := newTestService(t)
	res, _ := ts.do("POST", "/redfish/v1/SessionService/Sessions", noAuth, fmt.Sprintf(`{"UserName":%q,"Password":%q}`, testUser, testPass))
	tok := res.Header.Get("X-Auth-Token")
	ts.do("GET", sysPath, token(tok), "")
	ts.do("GET", sysPath, basic(testUser, "guess-Pass"), "")
	ts.do("PATCH", sysPath, good, `{"Boot":{"BootSourceOverrideTarget":"Pxe"}}`)
	entries := ts.logs.All()
	if len(entries) != 4 {
		t.Fatalf("%d log lines for 4 requests", len(entries))
	}
	want := []struct {
		method string
		status int64
		user   string
	}{{"POST", 201, testUser}, {"GET", 200, testUser}, {"GET", 401, "-"}, {"PATCH", 200, testUser}}
	for i, e := range entries {
		f := e.ContextMap()
		if f["method"] != want[i].method || f["status"] != want[i].status || f["user"] != want[i].user || f["path"] == nil || f["duration"] == nil {
			t.Errorf("line %d: %v, want %+v", i, f, want[i])
		}
		line := fmt.Sprint(e.Message, f)
		for _, secret := range []string{testPass, "guess-Pass", tok} {
			if strings.Contains(line, secret) {
				t.Errorf("line %d shows a secret: %s", i, line)
			}
		}
	}
}

// TestConcurrentPowerCycle runs 200 requests at once, reads and power
// cycles mixed, against the fake under the race detector.
func TestConcurrentPowerCycle(t *testing.T) {
	ts := newTestService(t)
	var wg sync.WaitGroup
	statuses := make(chan int, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res *http.Response
			var b []byte
			switch i % 4 {
			case 0:
				res, b = ts.do("POST", sysPath+"/Actions/ComputerSystem.Reset", good, `{"ResetType":"PowerCycle"}`)
			case 1:
				res, b = ts.do("POST", sysPath+"/Actions/ComputerSystem.Reset", good, `{"ResetType":"ForceOff"}`)
			default:
				res, b = ts.do("GET", sysPath, good, "")
				if res.StatusCode == 200 {
					if p := decode(t, b)["PowerState"]; p != "On" && p != "Off" {
						t.Errorf("PowerState %v", p)
					}
				}
			}
			if res.StatusCode >= 300 && res.StatusCode != 409 {
				t.Errorf("status %d: %s", res.StatusCode, b)
			}
			statuses <- res.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	n := 0
	for range statuses {
		n++
	}
	if n != 200 {
		t.Errorf("%d answers to 200 requests", n)
	}
	if res, _ := ts.do("GET", sysPath, good, ""); res.StatusCode != 200 {
		t.Errorf("after the storm: %d", res.StatusCode)
	}
}

func TestSecureBoot(t *testing.T) {
	tests := []struct {
		name   string
		mode   config.BootMode
		body   string
		status int
		calls  []string
		after  bool
	}{
		{"enable", config.BootUEFI, `{"SecureBootEnable":true}`, 200, []string{"SetBootMode secure"}, true},
		{"disable", config.BootSecure, `{"SecureBootEnable":false}`, 200, []string{"SetBootMode uefi"}, false},
		{"already on", config.BootSecure, `{"SecureBootEnable":true}`, 200, nil, true},
		{"off in legacy", config.BootLegacy, `{"SecureBootEnable":false}`, 200, nil, false},
		{"on in legacy", config.BootLegacy, `{"SecureBootEnable":true}`, 400, nil, false},
		{"not a bool", config.BootUEFI, `{"SecureBootEnable":"yes"}`, 400, nil, false},
		{"read only", config.BootUEFI, `{"SecureBootMode":"SetupMode"}`, 400, nil, false},
		{"unknown", config.BootUEFI, `{"SecureBootDatabases":{}}`, 400, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestService(t)
			ts.vm.set(func(s *controller.Status) { s.BootMode = tc.mode })
			res, b := ts.do("PATCH", sysPath+"/SecureBoot", good, tc.body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, b)
			}
			if got := ts.vm.Calls(); !slices.Equal(got, tc.calls) {
				t.Errorf("calls %q, want %q", got, tc.calls)
			}
			_, b = ts.do("GET", sysPath+"/SecureBoot", good, "")
			if got := decode(t, b)["SecureBootEnable"]; got != tc.after {
				t.Errorf("SecureBootEnable %v, want %v", got, tc.after)
			}
		})
	}
}

func TestBootModeNames(t *testing.T) {
	for m, want := range map[config.BootMode]string{config.BootUEFI: "UEFI", config.BootSecure: "UEFI", config.BootLegacy: "Legacy", "": "UEFI"} {
		if got := bootMode(m); got != want {
			t.Errorf("bootMode(%q) = %s, want %s", m, got, want)
		}
	}
}

// TestPatchETagRace: of many PATCHes sent at once with the same ETag,
// exactly one succeeds; the others see the change and get 412.
func TestPatchETagRace(t *testing.T) {
	ts := newTestService(t)
	res, _ := ts.do("GET", sysPath, good, "")
	tag := res.Header.Get("ETag")
	targets := []string{"Pxe", "Hdd", "Cd"}
	var wg sync.WaitGroup
	codes := make(chan int, 30)
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := `{"Boot":{"BootSourceOverrideEnabled":"Continuous","BootSourceOverrideTarget":"` + targets[i%3] + `"}}`
			res, _ := ts.do("PATCH", sysPath, good, body, "If-Match", tag)
			codes <- res.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	if n[200] != 1 || n[412] != 29 {
		t.Errorf("statuses %v, want one 200 and 29 412", n)
	}
}

// TestInsertMediaFetchErrors: an image the BMC cannot fetch is the
// client's to fix, so the answer is a 400 naming Image, the URL and why,
// never a 500. The errors are the image package's own, from real fetches.
func TestInsertMediaFetchErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/secret.iso":
			w.WriteHeader(http.StatusForbidden)
		case "/broken.iso":
			w.WriteHeader(http.StatusInternalServerError)
		case "/big.iso":
			w.Header().Set("Content-Length", "4096")
			w.Write(make([]byte, 4096))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	fetch := func(url string) error {
		_, err := image.Fetch(context.Background(), image.FetchRequest{URL: url, CacheDir: t.TempDir(), AllowHTTP: true,
			Attempts: 1, MaxSize: 1024})
		if err == nil {
			t.Fatalf("fetching %s succeeded", url)
		}
		return err
	}
	tests := []struct{ url, id, why string }{
		{srv.URL + "/missing.iso", "ResourceMissingAtURI", "404"},
		{srv.URL + "/secret.iso", "ResourceAtUriUnauthorized", "403"},
		{srv.URL + "/broken.iso", "GeneralError", "500"},
		{srv.URL + "/big.iso", "GeneralError", "DOWNLOAD_MAX_SIZE"},
		{closed.URL + "/x.iso", "CouldNotEstablishConnection", "connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.id+" "+tc.why, func(t *testing.T) {
			ts := newTestService(t)
			ts.vm.setFail("InsertMedia", fetch(tc.url))
			res, b := ts.do("POST", cdPath+"/Actions/VirtualMedia.InsertMedia", good, `{"Image":"`+tc.url+`"}`)
			id, msg := messageID(t, b)
			if res.StatusCode != 400 || id != registry+tc.id {
				t.Fatalf("%d %s, want 400 %s: %s", res.StatusCode, id, tc.id, b)
			}
			for _, want := range []string{"Image", tc.url, tc.why} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not name %q", msg, want)
				}
			}
			info := get(decode(t, b), "error", "@Message.ExtendedInfo").([]any)[0]
			if fmt.Sprint(get(info, "RelatedProperties")) != "[#/Image]" {
				t.Errorf("RelatedProperties %v, want [#/Image]", get(info, "RelatedProperties"))
			}
			if _, b := ts.do("GET", cdPath, good, ""); decode(t, b)["Inserted"] != false {
				t.Errorf("a failed insert left a medium: %s", b)
			}
		})
	}
}
