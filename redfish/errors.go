package redfish

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/image"
)

// registry prefixes every MessageId: DMTF's Base message registry.
const registry = "Base.1.8."

// rfError is an error answer: an HTTP status and one Base registry message.
type rfError struct {
	status     int
	id         string // MessageId without the registry prefix
	msg        string
	args       []string
	resolution string
	related    []string // RelatedProperties, JSON pointers into the request body
	retryAfter int      // seconds for the Retry-After header; 0: none
}

func (e *rfError) Error() string { return e.msg }

func writeError(w http.ResponseWriter, e *rfError) {
	severity := "Warning"
	if e.status >= 500 {
		severity = "Critical"
	}
	args := e.args
	if args == nil {
		args = []string{}
	}
	msg := map[string]any{
		"@odata.type":     "#Message.v1_1_1.Message",
		"MessageId":       registry + e.id,
		"Message":         e.msg,
		"MessageArgs":     args,
		"Severity":        severity,
		"MessageSeverity": severity,
		"Resolution":      e.resolution,
	}
	if e.related != nil {
		msg["RelatedProperties"] = e.related
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(e.retryAfter))
	}
	writeJSON(w, e.status, map[string]any{"error": map[string]any{
		"code":                  registry + e.id,
		"message":               e.msg,
		"@Message.ExtendedInfo": []any{msg},
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only this package's own documents come here; they marshal.
		panic(fmt.Sprintf("redfish: marshalling a document: %v", err))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func errNoSession() *rfError {
	return &rfError{status: http.StatusUnauthorized, id: "NoValidSession",
		msg:        "There is no valid session established with the implementation: give HTTP basic credentials or an X-Auth-Token.",
		resolution: "Log in with the REDFISH_USERNAME and REDFISH_PASSWORD credentials, by basic auth or a session from " + sessionsPath + "."}
}

func errNotFound(path string) *rfError {
	return &rfError{status: http.StatusNotFound, id: "ResourceMissingAtURI",
		msg:        fmt.Sprintf("The resource at the URI %s was not found.", path),
		args:       []string{path},
		resolution: "Use a URI the service links to, starting from /redfish/v1/."}
}

func errMethod(method, path string) *rfError {
	return &rfError{status: http.StatusMethodNotAllowed, id: "GeneralError",
		msg:        fmt.Sprintf("The method %s is not allowed on %s.", method, path),
		resolution: "Use one of the methods in the Allow header."}
}

func errMalformed(err error) *rfError {
	return &rfError{status: http.StatusBadRequest, id: "MalformedJSON",
		msg:        "The request body submitted was malformed JSON and could not be parsed by the receiving service: " + err.Error(),
		resolution: "Send one JSON object."}
}

func errTooLarge() *rfError {
	return &rfError{status: http.StatusRequestEntityTooLarge, id: "GeneralError",
		msg:        fmt.Sprintf("The request body is larger than %d bytes.", maxBody),
		resolution: "Send a smaller body; no request of this service needs more than a few hundred bytes."}
}

func errPropertyUnknown(name string, allowed []string) *rfError {
	return &rfError{status: http.StatusBadRequest, id: "PropertyUnknown",
		msg:        fmt.Sprintf("The property %s is not in the list of valid properties for the resource; writable: %s.", name, strings.Join(allowed, ", ")),
		args:       []string{name},
		resolution: "Remove the unknown property from the request body and resubmit the request if the operation failed."}
}

func errNotWritable(name string) *rfError {
	return &rfError{status: http.StatusBadRequest, id: "PropertyNotWritable",
		msg:        fmt.Sprintf("The property %s is a read only property and cannot be assigned a value.", name),
		args:       []string{name},
		resolution: "Remove the property from the request body and resubmit the request if the operation failed."}
}

func errValueNotInList(name, value string, allowed []string) *rfError {
	return &rfError{status: http.StatusBadRequest, id: "PropertyValueNotInList",
		msg:        fmt.Sprintf("The value %q for the property %s is not in the list of acceptable values: %s.", value, name, strings.Join(allowed, ", ")),
		args:       []string{value, name},
		resolution: "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed."}
}

func errValueType(name, raw string, want string) *rfError {
	return &rfError{status: http.StatusBadRequest, id: "PropertyValueTypeError",
		msg:        fmt.Sprintf("The value %s for the property %s is of a different type than the property can accept (%s).", clip(raw), name, want),
		args:       []string{clip(raw), name},
		resolution: "Correct the value for the property in the request body and resubmit the request if the operation failed."}
}

func errParamMissing(action, param string) *rfError {
	return &rfError{status: http.StatusBadRequest, id: "ActionParameterMissing",
		msg:        fmt.Sprintf("The action %s requires the parameter %s to be present in the request body.", action, param),
		args:       []string{action, param},
		resolution: "Supply the action with the required parameter in the request body when the request is resubmitted."}
}

func errParamUnknown(action, param string, allowed []string) *rfError {
	return &rfError{status: http.StatusBadRequest, id: "ActionParameterUnknown",
		msg:        fmt.Sprintf("The action %s was submitted with the invalid parameter %s; accepted: %s.", action, param, strings.Join(allowed, ", ")),
		args:       []string{action, param},
		resolution: "Correct the invalid parameter and resubmit the request if the operation failed."}
}

func errParamNotInList(action, param, value string, allowed []string) *rfError {
	return &rfError{status: http.StatusBadRequest, id: "ActionParameterValueNotInList",
		msg:        fmt.Sprintf("The value %q for the parameter %s in the action %s is not in the list of acceptable values: %s.", value, param, action, strings.Join(allowed, ", ")),
		args:       []string{value, param, action},
		resolution: "Choose a value from the enumeration list and resubmit the request if the operation failed."}
}

func errParamType(action, param, raw, want string) *rfError {
	return &rfError{status: http.StatusBadRequest, id: "ActionParameterValueTypeError",
		msg:        fmt.Sprintf("The value %s for the parameter %s in the action %s is of a different type than the parameter can accept (%s).", clip(raw), param, action, want),
		args:       []string{clip(raw), param, action},
		resolution: "Correct the value for the parameter in the request body and resubmit the request if the operation failed."}
}

func errParamFormat(action, param, value, why string) *rfError {
	return &rfError{status: http.StatusBadRequest, id: "ActionParameterValueFormatError",
		msg:        fmt.Sprintf("The value %q for the parameter %s in the action %s is of a different format than the parameter can accept: %s.", clip(value), param, action, why),
		args:       []string{clip(value), param, action},
		resolution: "Correct the value for the parameter in the request body and resubmit the request if the operation failed."}
}

func errPrecondition() *rfError {
	return &rfError{status: http.StatusPreconditionFailed, id: "PreconditionFailed",
		msg:        "The ETag supplied did not match the ETag required to change this resource.",
		resolution: "Try the operation again using the appropriate ETag."}
}

func errSessionLimit() *rfError {
	return &rfError{status: http.StatusServiceUnavailable, id: "SessionLimitExceeded",
		msg:        "The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.",
		resolution: "Reduce the number of other sessions before trying to establish the session or increase the limit of simultaneous sessions (if supported)."}
}

// errAPI maps the controller's answer to an action.
func errAPI(what string, err error) *rfError {
	switch {
	case errors.Is(err, controller.ErrState):
		return &rfError{status: http.StatusConflict, id: "GeneralError",
			msg:        what + ": " + err.Error(),
			resolution: "Check the system's PowerState and try an action that applies to it."}
	case errors.Is(err, controller.ErrInvalid):
		return &rfError{status: http.StatusBadRequest, id: "GeneralError",
			msg:        what + ": " + err.Error(),
			resolution: "Correct the request as the message says and resubmit it."}
	}
	return &rfError{status: http.StatusInternalServerError, id: "GeneralError",
		msg:        what + " failed: " + err.Error(),
		resolution: "The service is still operational; see vmrunner's log, then retry."}
}

// errMedium is a failed InsertMedia. What the image's server did (no
// connection, an HTTP error, an image over the size cap) is the client's to
// fix, so it is a 400 naming Image and why, and nothing was inserted; only
// a fault of this host (a full cache) remains a 500. sushy (and so Ironic)
// takes a 4xx as a final error, where a 5xx would suggest retrying.
func errMedium(url string, err error) *rfError {
	var (
		status *image.StatusError
		limit  *image.LimitError
		nerr   net.Error
	)
	why := err.Error()
	e := &rfError{status: http.StatusBadRequest, related: []string{"#/Image"},
		resolution: "Check that the Image URL serves the image to this BMC's host, then retry; nothing was inserted."}
	switch {
	case errors.As(err, &status) && (status.Status == http.StatusUnauthorized || status.Status == http.StatusForbidden):
		e.id, e.args = "ResourceAtUriUnauthorized", []string{url, why}
		e.msg = fmt.Sprintf("While accessing the resource at %s (the parameter Image of %s), the service received an authorization error: %s.", url, insertAction, why)
		e.resolution = "Serve the image without credentials (InsertMedia takes none), then retry; nothing was inserted."
	case errors.As(err, &status) && (status.Status == http.StatusNotFound || status.Status == http.StatusGone):
		e.id, e.args = "ResourceMissingAtURI", []string{url}
		e.msg = fmt.Sprintf("The resource at the URI %s (the parameter Image of %s) was not found: %s.", url, insertAction, why)
	case errors.As(err, &status):
		e.id, e.args = "GeneralError", nil
		e.msg = fmt.Sprintf("The image at %s (the parameter Image of %s) could not be fetched: %s.", url, insertAction, why)
	case errors.As(err, &nerr):
		e.id, e.args = "CouldNotEstablishConnection", []string{url}
		e.msg = fmt.Sprintf("The service failed to establish a connection with the URI %s (the parameter Image of %s): %s.", url, insertAction, why)
	case errors.As(err, &limit):
		e.id, e.args = "GeneralError", nil
		e.msg = fmt.Sprintf("The image at %s (the parameter Image of %s) is too large: %s.", url, insertAction, why)
		e.resolution = "Use a smaller image, or raise " + limit.Var + " on the BMC's host; nothing was inserted."
	case errors.Is(err, image.ErrBadURL):
		return errParamFormat(insertAction, "Image", url, why)
	default:
		return errAPI("inserting the image", err)
	}
	return e
}

// errBackoff refuses a client that must wait longer for its next password
// check than this service queues it.
func errBackoff(wait time.Duration) *rfError {
	secs := int((wait + time.Second - 1) / time.Second)
	return &rfError{status: http.StatusServiceUnavailable, id: "ServiceTemporarilyUnavailable",
		msg:  fmt.Sprintf("The service is temporarily unavailable to this client after repeated failed logins. Retry in %d seconds.", secs),
		args: []string{fmt.Sprint(secs)}, resolution: "Wait for the indicated retry duration and check the credentials.",
		retryAfter: secs}
}

// clip shortens a client's value quoted back in a message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
