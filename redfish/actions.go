package redfish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/controller"
)

// readObject reads a body that must be one JSON object (or nothing, which
// is an empty object) and returns its members unparsed, so each member is
// checked against what the resource accepts by name. encoding/json bounds
// nesting depth, and the body is capped at maxBody by serve.
func readObject(r *http.Request) (map[string]json.RawMessage, *rfError) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errTooLarge()
		}
		return nil, errMalformed(err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return map[string]json.RawMessage{}, nil
	}
	if b[0] != '{' {
		return nil, errMalformed(errors.New("the body is not a JSON object"))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, errMalformed(err)
	}
	return obj, nil
}

// sortedKeys makes the first unknown property reported the same each time.
func sortedKeys(m map[string]json.RawMessage) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// readOnlySystem are the system's properties a client sees but cannot set.
var readOnlySystem = []string{"@odata.id", "@odata.type", "@odata.etag", "Id", "Name", "SystemType", "Manufacturer",
	"Model", "UUID", "PowerState", "Status", "MemorySummary", "ProcessorSummary", "Processors",
	"EthernetInterfaces", "Links", "Actions", "BiosVersion", "SecureBoot"}

// patchSystem takes Boot's override properties, the only writable ones.
func (s *service) patchSystem(r *http.Request, body map[string]json.RawMessage) *rfError {
	var boot map[string]json.RawMessage
	for _, k := range sortedKeys(body) {
		switch {
		case k == "Boot":
			if err := json.Unmarshal(body[k], &boot); err != nil || boot == nil {
				return errValueType("Boot", string(body[k]), "an object")
			}
		case slices.Contains(readOnlySystem, k):
			return errNotWritable(k)
		default:
			return errPropertyUnknown(k, []string{"Boot"})
		}
	}
	writable := []string{"BootSourceOverrideEnabled", "BootSourceOverrideTarget", "BootSourceOverrideMode"}
	want := map[string]string{}
	for _, k := range sortedKeys(boot) {
		var allowed []string
		switch k {
		case "BootSourceOverrideEnabled":
			allowed = overrideStates
		case "BootSourceOverrideTarget":
			allowed = bootTargets
		case "BootSourceOverrideMode":
			allowed = bootModes
		default:
			if strings.HasSuffix(k, "@Redfish.AllowableValues") {
				return errNotWritable("Boot/" + k)
			}
			return errPropertyUnknown("Boot/"+k, writable)
		}
		var v string
		if err := json.Unmarshal(boot[k], &v); err != nil {
			return errValueType("Boot/"+k, string(boot[k]), "a string: "+strings.Join(allowed, ", "))
		}
		if !slices.Contains(allowed, v) {
			return errValueNotInList("Boot/"+k, v, allowed)
		}
		want[k] = v
	}

	st := s.api.Status()
	ctx := r.Context()
	if m, ok := want["BootSourceOverrideMode"]; ok && m != bootMode(st.BootMode) {
		mode := config.BootUEFI
		if m == "Legacy" {
			mode = config.BootLegacy
		}
		if err := s.api.SetBootMode(ctx, mode); err != nil {
			return errAPI("setting BootSourceOverrideMode "+m, err)
		}
	}
	enabled, target := bootOverride(st.Boot)
	_, setE := want["BootSourceOverrideEnabled"]
	_, setT := want["BootSourceOverrideTarget"]
	if !setE && !setT {
		return nil
	}
	if setE {
		enabled = want["BootSourceOverrideEnabled"]
	}
	if setT {
		target = want["BootSourceOverrideTarget"]
	}
	next := controller.BootOverride{}
	if enabled != "Disabled" && target != "None" {
		next = controller.BootOverride{Device: targetDevice[target], Once: enabled == "Once"}
	}
	if next == st.Boot {
		return nil
	}
	if err := s.api.SetBoot(ctx, next); err != nil {
		return errAPI(fmt.Sprintf("setting the boot override to %s %s", enabled, target), err)
	}
	return nil
}

// actionContext outlives the client: an action half done because the
// client hung up (PowerCycle off but not on) would surprise more than one
// that completes unobserved.
func actionContext(r *http.Request) context.Context {
	return context.WithoutCancel(r.Context())
}

const resetAction = "ComputerSystem.Reset"

func (s *service) resetAction(w http.ResponseWriter, r *http.Request) *rfError {
	body, rerr := readObject(r)
	if rerr != nil {
		return rerr
	}
	for _, k := range sortedKeys(body) {
		if k != "ResetType" {
			return errParamUnknown(resetAction, k, []string{"ResetType"})
		}
	}
	raw, ok := body["ResetType"]
	if !ok {
		return errParamMissing(resetAction, "ResetType")
	}
	var typ string
	if err := json.Unmarshal(raw, &typ); err != nil {
		return errParamType(resetAction, "ResetType", string(raw), "a string: "+strings.Join(resetTypes, ", "))
	}
	if !slices.Contains(resetTypes, typ) {
		return errParamNotInList(resetAction, "ResetType", typ, resetTypes)
	}
	ctx := actionContext(r)
	var err error
	switch typ {
	case "On":
		err = s.api.PowerOn(ctx)
	case "ForceOff":
		err = s.api.PowerOff(ctx, false)
	case "GracefulShutdown":
		err = s.api.PowerOff(ctx, true)
	case "GracefulRestart":
		err = s.api.Reboot(ctx)
	case "ForceRestart":
		err = s.api.Reset(ctx)
	case "PowerCycle":
		// Off then on; a VM that is already off is just powered on.
		if err = s.api.PowerOff(ctx, false); errors.Is(err, controller.ErrState) {
			err = nil
		}
		if err == nil {
			err = s.api.PowerOn(ctx)
		}
	case "Nmi":
		err = s.api.NMI(ctx)
	}
	if err != nil {
		return errAPI("ResetType "+typ, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

const insertAction = "VirtualMedia.InsertMedia"

// maxImageURL bounds the Image parameter; real image URLs are far shorter.
const maxImageURL = 4096

func (s *service) insertMedia(w http.ResponseWriter, r *http.Request) *rfError {
	body, rerr := readObject(r)
	if rerr != nil {
		return rerr
	}
	params := []string{"Image", "Inserted", "WriteProtected", "TransferMethod", "TransferProtocolType", "UserName", "Password"}
	var (
		image, method, proto, user, pass string
		inserted, protected              = true, true
	)
	for _, k := range sortedKeys(body) {
		raw := body[k]
		var err error
		switch k {
		case "Image":
			err = json.Unmarshal(raw, &image)
		case "Inserted":
			err = json.Unmarshal(raw, &inserted)
		case "WriteProtected":
			err = json.Unmarshal(raw, &protected)
		case "TransferMethod":
			err = json.Unmarshal(raw, &method)
		case "TransferProtocolType":
			err = json.Unmarshal(raw, &proto)
		case "UserName":
			err = json.Unmarshal(raw, &user)
		case "Password":
			err = json.Unmarshal(raw, &pass)
		default:
			return errParamUnknown(insertAction, k, params)
		}
		if err != nil {
			want := "a string"
			if k == "Inserted" || k == "WriteProtected" {
				want = "true or false"
			}
			return errParamType(insertAction, k, string(raw), want)
		}
	}
	if _, ok := body["Image"]; !ok {
		return errParamMissing(insertAction, "Image")
	}
	if err := checkImageURL(image); err != nil {
		return errParamFormat(insertAction, "Image", image, err.Error())
	}
	switch {
	case !inserted:
		return errParamNotInList(insertAction, "Inserted", "false", []string{"true"})
	case !protected:
		return errParamNotInList(insertAction, "WriteProtected", "false", []string{"true (the CD drive is read-only)"})
	case method != "" && method != "Stream":
		return errParamNotInList(insertAction, "TransferMethod", method, []string{"Stream"})
	case proto != "" && !strings.EqualFold(proto, strings.SplitN(image, ":", 2)[0]):
		return errParamNotInList(insertAction, "TransferProtocolType", proto, []string{"the Image URL's scheme (HTTP or HTTPS)"})
	case user != "" || pass != "":
		return errParamNotInList(insertAction, "UserName", "(set)", []string{"unset: images are fetched without credentials"})
	}
	// The fetch outlives the client too: a client whose HTTP timeout is
	// shorter than an ISO's download would otherwise never get it in,
	// however often it retried; the retry then finds the image cached.
	if err := s.api.InsertMedia(actionContext(r), image); err != nil {
		return errMedium(image, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// checkImageURL admits what the image cache fetches: http(s) URLs with a
// host and no credentials. A file:// URL would let a network client attach
// any file of the host to the guest.
func checkImageURL(s string) error {
	if len(s) > maxImageURL {
		return fmt.Errorf("longer than %d bytes", maxImageURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("only http:// and https:// URLs are accepted")
	}
	if u.Host == "" {
		return errors.New("the URL has no host")
	}
	if u.User != nil {
		return errors.New("credentials in the URL are not accepted")
	}
	return nil
}

func (s *service) ejectMedia(w http.ResponseWriter, r *http.Request) *rfError {
	body, rerr := readObject(r)
	if rerr != nil {
		return rerr
	}
	for _, k := range sortedKeys(body) {
		return errParamUnknown("VirtualMedia.EjectMedia", k, []string{"(none)"})
	}
	if err := s.api.EjectMedia(actionContext(r)); err != nil {
		return errAPI("ejecting the medium", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// patchSecureBoot switches between UEFI with and without Secure Boot; the
// change applies from the next start, as BootSourceOverrideMode does.
func (s *service) patchSecureBoot(r *http.Request, body map[string]json.RawMessage) *rfError {
	var want *bool
	for _, k := range sortedKeys(body) {
		switch k {
		case "SecureBootEnable":
			var v bool
			if err := json.Unmarshal(body[k], &v); err != nil {
				return errValueType(k, string(body[k]), "true or false")
			}
			want = &v
		case "@odata.id", "@odata.type", "@odata.etag", "Id", "Name", "SecureBootCurrentBoot", "SecureBootMode":
			return errNotWritable(k)
		default:
			return errPropertyUnknown(k, []string{"SecureBootEnable"})
		}
	}
	if want == nil {
		return nil
	}
	mode := s.api.Status().BootMode
	next := mode
	switch {
	case *want && mode == config.BootLegacy:
		return &rfError{status: http.StatusBadRequest, id: "PropertyValueConflict",
			msg:        "The property SecureBootEnable could not be written because its value would conflict with the value of the BootSourceOverrideMode property (Legacy).",
			args:       []string{"SecureBootEnable", "BootSourceOverrideMode"},
			resolution: "Set BootSourceOverrideMode to UEFI first."}
	case *want:
		next = config.BootSecure
	case mode == config.BootSecure:
		next = config.BootUEFI
	}
	if next == mode {
		return nil
	}
	if err := s.api.SetBootMode(r.Context(), next); err != nil {
		return errAPI("setting SecureBootEnable", err)
	}
	return nil
}
