// Package control is the controller's local socket, control.sock in the
// state folder: the CLI verbs (vmrunner status, start, stop, console, …)
// reach a running vmrunner through it, e.g. with docker exec.
//
// The protocol is JSON lines. A client sends one Request per line and
// reads one Response per line, on one connection as often as it likes. The
// "console" op answers with a Response and then the connection carries raw
// bytes: the guest's serial output one way, keystrokes the other, until
// either side closes it.
//
// The socket is mode 0600 and the server refuses a peer whose uid
// (SO_PEERCRED) is neither its own nor root's.
package control

import (
	"errors"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/controller"
)

// Ops of a Request.
const (
	OpStatus      = "status"
	OpPowerOn     = "power_on"
	OpPowerOff    = "power_off" // Graceful: ACPI first
	OpReboot      = "reboot"
	OpReset       = "reset"
	OpNMI         = "nmi"
	OpPause       = "pause"
	OpResume      = "resume"
	OpSetBoot     = "set_boot"      // Boot
	OpSetBootMode = "set_boot_mode" // BootMode
	OpInsertMedia = "insert_media"  // Source
	OpEjectMedia  = "eject_media"
	OpConsole     = "console"
)

// Request is one line from the client.
type Request struct {
	Op       string                   `json:"op"`
	Graceful bool                     `json:"graceful,omitempty"`
	Boot     *controller.BootOverride `json:"boot,omitempty"`
	BootMode config.BootMode          `json:"boot_mode,omitempty"`
	Source   string                   `json:"source,omitempty"`
}

// Error kinds of a Response, so a client can tell them apart.
const (
	KindState   = "state"   // controller.ErrState
	KindInvalid = "invalid" // controller.ErrInvalid
	KindDenied  = "denied"  // the peer may not use this socket
	KindOther   = "error"
)

// Response is one line from the server.
type Response struct {
	OK     bool               `json:"ok"`
	Error  string             `json:"error,omitempty"`
	Kind   string             `json:"kind,omitempty"`
	Status *controller.Status `json:"status,omitempty"`
}

// Err turns a failed Response back into an error that errors.Is matches
// against controller.ErrState and controller.ErrInvalid.
func (r Response) Err() error {
	if r.OK {
		return nil
	}
	e := &remoteError{msg: r.Error}
	switch r.Kind {
	case KindState:
		e.kind = controller.ErrState
	case KindInvalid:
		e.kind = controller.ErrInvalid
	case KindDenied:
		e.kind = ErrDenied
	}
	return e
}

// remoteError is the server's message, matching its kind with errors.Is.
type remoteError struct {
	kind error
	msg  string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

// ErrDenied: the server refused this client.
var ErrDenied = errors.New("permission denied")
