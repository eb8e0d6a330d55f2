package redfish

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"github.com/vmrunner/vmrunner/controller"
)

// FuzzBodies sends arbitrary bodies to every resource that reads one: the
// service must answer each with a Redfish document or error (never a
// panic, never a 5xx), and leave the VM in a state it can name.
func FuzzBodies(f *testing.F) {
	seeds := []string{
		`{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}`,
		`{"Boot":{"BootSourceOverrideMode":"Legacy"}}`,
		`{"Boot":{"BootSourceOverrideTarget":null}}`,
		`{"ResetType":"PowerCycle"}`, `{"ResetType":"On"}`, `{"ResetType":["On"]}`,
		`{"Image":"http://h/x.iso","Inserted":true,"WriteProtected":true}`,
		`{"Image":"file:///etc/passwd"}`, `{"Image":"http://h/\u0000"}`,
		`{"UserName":"admin","Password":"s3cret-Pass"}`,
		`{}`, ``, `null`, `[]`, `{"a":{"b":{"c":[1,2,{"d":null}]}}}`, `{"Boot":{"Boot":{"Boot":{}}}}`,
		"{\"ResetType\":\"On\"\x00}", `{"ResetType":"On","ResetType":"Nmi"}`, `{"ResetType":"\ud800"}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), s)
	}
	targets := []struct{ method, path string }{
		{"PATCH", sysPath},
		{"POST", sysPath + "/Actions/ComputerSystem.Reset"},
		{"POST", cdPath + "/Actions/VirtualMedia.InsertMedia"},
		{"POST", cdPath + "/Actions/VirtualMedia.EjectMedia"},
		{"POST", "/redfish/v1/SessionService/Sessions"},
	}
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		ts := newTestService(t)
		tg := targets[int(which)%len(targets)]
		res, b := ts.do(tg.method, tg.path, good, body)
		switch {
		case res.StatusCode >= 500:
			t.Fatalf("%s %s %q: %d %s", tg.method, tg.path, body, res.StatusCode, b)
		case res.StatusCode == 204:
			if len(b) != 0 {
				t.Fatalf("204 with a body: %s", b)
			}
		case res.StatusCode >= 400:
			messageID(t, b)
		default:
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("%d answer is not a JSON object: %s", res.StatusCode, b)
			}
		}
		st := ts.vm.Status()
		if e, tgt := bootOverride(st.Boot); !slices.Contains(overrideStates, e) || !slices.Contains(bootTargets, tgt) {
			t.Fatalf("boot override %+v has no Redfish name", st.Boot)
		}
		if !slices.Contains([]controller.PowerState{controller.Off, controller.Running}, st.Power) {
			t.Fatalf("power %s", st.Power)
		}
	})
}

// FuzzImageURL: whatever checkImageURL admits is an http(s) URL with a
// host and no credentials.
func FuzzImageURL(f *testing.F) {
	for _, s := range []string{"http://h/x.iso", "https://[::1]:8/x", "file:///x", "HTTP://h/x", "http://u@h/", "//h/x", "http:h", "http://%zz/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkImageURL(s) != nil {
			return
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			t.Fatalf("admitted %q: %+v %v", s, u, err)
		}
	})
}
