package redfish

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/vmrunner/vmrunner/controller"
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
	return &rfError{http.StatusUnauthorized, "NoValidSession",
		"There is no valid session established with the implementation: give HTTP basic credentials or an X-Auth-Token.", nil,
		"Log in with the REDFISH_USERNAME and REDFISH_PASSWORD credentials, by basic auth or a session from " + sessionsPath + "."}
}

func errNotFound(path string) *rfError {
	return &rfError{http.StatusNotFound, "ResourceMissingAtURI",
		fmt.Sprintf("The resource at the URI %s was not found.", path), []string{path},
		"Use a URI the service links to, starting from /redfish/v1/."}
}

func errMethod(method, path string) *rfError {
	return &rfError{http.StatusMethodNotAllowed, "GeneralError",
		fmt.Sprintf("The method %s is not allowed on %s.", method, path), nil,
		"Use one of the methods in the Allow header."}
}

func errMalformed(err error) *rfError {
	return &rfError{http.StatusBadRequest, "MalformedJSON",
		"The request body submitted was malformed JSON and could not be parsed by the receiving service: " + err.Error(), nil,
		"Send one JSON object."}
}

func errTooLarge() *rfError {
	return &rfError{http.StatusRequestEntityTooLarge, "GeneralError",
		fmt.Sprintf("The request body is larger than %d bytes.", maxBody), nil,
		"Send a smaller body; no request of this service needs more than a few hundred bytes."}
}

func errPropertyUnknown(name string, allowed []string) *rfError {
	return &rfError{http.StatusBadRequest, "PropertyUnknown",
		fmt.Sprintf("The property %s is not in the list of valid properties for the resource; writable: %s.", name, strings.Join(allowed, ", ")),
		[]string{name}, "Remove the unknown property from the request body and resubmit the request if the operation failed."}
}

func errNotWritable(name string) *rfError {
	return &rfError{http.StatusBadRequest, "PropertyNotWritable",
		fmt.Sprintf("The property %s is a read only property and cannot be assigned a value.", name),
		[]string{name}, "Remove the property from the request body and resubmit the request if the operation failed."}
}

func errValueNotInList(name, value string, allowed []string) *rfError {
	return &rfError{http.StatusBadRequest, "PropertyValueNotInList",
		fmt.Sprintf("The value %q for the property %s is not in the list of acceptable values: %s.", value, name, strings.Join(allowed, ", ")),
		[]string{value, name}, "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed."}
}

func errValueType(name, raw string, want string) *rfError {
	return &rfError{http.StatusBadRequest, "PropertyValueTypeError",
		fmt.Sprintf("The value %s for the property %s is of a different type than the property can accept (%s).", clip(raw), name, want),
		[]string{clip(raw), name}, "Correct the value for the property in the request body and resubmit the request if the operation failed."}
}

func errParamMissing(action, param string) *rfError {
	return &rfError{http.StatusBadRequest, "ActionParameterMissing",
		fmt.Sprintf("The action %s requires the parameter %s to be present in the request body.", action, param),
		[]string{action, param}, "Supply the action with the required parameter in the request body when the request is resubmitted."}
}

func errParamUnknown(action, param string, allowed []string) *rfError {
	return &rfError{http.StatusBadRequest, "ActionParameterUnknown",
		fmt.Sprintf("The action %s was submitted with the invalid parameter %s; accepted: %s.", action, param, strings.Join(allowed, ", ")),
		[]string{action, param}, "Correct the invalid parameter and resubmit the request if the operation failed."}
}

func errParamNotInList(action, param, value string, allowed []string) *rfError {
	return &rfError{http.StatusBadRequest, "ActionParameterValueNotInList",
		fmt.Sprintf("The value %q for the parameter %s in the action %s is not in the list of acceptable values: %s.", value, param, action, strings.Join(allowed, ", ")),
		[]string{value, param, action}, "Choose a value from the enumeration list and resubmit the request if the operation failed."}
}

func errParamType(action, param, raw, want string) *rfError {
	return &rfError{http.StatusBadRequest, "ActionParameterValueTypeError",
		fmt.Sprintf("The value %s for the parameter %s in the action %s is of a different type than the parameter can accept (%s).", clip(raw), param, action, want),
		[]string{clip(raw), param, action}, "Correct the value for the parameter in the request body and resubmit the request if the operation failed."}
}

func errParamFormat(action, param, value, why string) *rfError {
	return &rfError{http.StatusBadRequest, "ActionParameterValueFormatError",
		fmt.Sprintf("The value %q for the parameter %s in the action %s is of a different format than the parameter can accept: %s.", clip(value), param, action, why),
		[]string{clip(value), param, action}, "Correct the value for the parameter in the request body and resubmit the request if the operation failed."}
}

func errPrecondition() *rfError {
	return &rfError{http.StatusPreconditionFailed, "PreconditionFailed",
		"The ETag supplied did not match the ETag required to change this resource.", nil,
		"Try the operation again using the appropriate ETag."}
}

func errSessionLimit() *rfError {
	return &rfError{http.StatusServiceUnavailable, "SessionLimitExceeded",
		"The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.", nil,
		"Reduce the number of other sessions before trying to establish the session or increase the limit of simultaneous sessions (if supported)."}
}

// errAPI maps the controller's answer to an action.
func errAPI(what string, err error) *rfError {
	switch {
	case errors.Is(err, controller.ErrState):
		return &rfError{http.StatusConflict, "GeneralError", what + ": " + err.Error(), nil,
			"Check the system's PowerState and try an action that applies to it."}
	case errors.Is(err, controller.ErrInvalid):
		return &rfError{http.StatusBadRequest, "GeneralError", what + ": " + err.Error(), nil,
			"Correct the request as the message says and resubmit it."}
	}
	return &rfError{http.StatusInternalServerError, "GeneralError", what + " failed: " + err.Error(), nil,
		"The service is still operational; see vmrunner's log, then retry."}
}

// clip shortens a client's value quoted back in a message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
