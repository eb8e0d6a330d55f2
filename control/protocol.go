// Package control is the controller's local socket, control.sock in the
// state folder: the CLI verbs (vmrunner status, start, stop, console, …)
// reach a running vmrunner through it, e.g. with docker exec.
//
// The protocol is JSON lines. A client sends one Request per line and
// reads one Response per line, on one connection as often as it likes. The
// "console" op answers with a Response and then the connection carries raw
// bytes: the guest's serial output one way, keystrokes the other, until
// either side closes it. The "exec" op runs a command in the guest through
// its agent: the server answers with output frames (Stream, Data) as the
// command writes, then one last Response carrying Exit, or an error.
//
// The socket is mode 0600 and the server refuses a peer whose uid
// (SO_PEERCRED) is neither its own nor root's.
package control

import (
	"errors"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/guestagent"
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
	// OpSetDisplayPassword: Password; never logged.
	OpSetDisplayPassword = "set_display_password"
	OpExec               = "exec" // Exec
)

// Request is one line from the client.
type Request struct {
	Op       string                   `json:"op"`
	Graceful bool                     `json:"graceful,omitempty"`
	Boot     *controller.BootOverride `json:"boot,omitempty"`
	BootMode config.BootMode          `json:"boot_mode,omitempty"`
	Source   string                   `json:"source,omitempty"`
	Password string                   `json:"password,omitempty"`
	Exec     *Exec                    `json:"exec,omitempty"`
}

// Exec is a command for the guest agent to run.
type Exec struct {
	Path  string   `json:"path"`
	Args  []string `json:"args,omitempty"`
	Stdin []byte   `json:"stdin,omitempty"` // at most guestagent.MaxStdin
	// TimeoutMS ends the command (SIGTERM) after this long; 0: no limit.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

// Streams of an exec output frame.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Error kinds of a Response, so a client can tell them apart.
const (
	KindState   = "state"      // controller.ErrState
	KindInvalid = "invalid"    // controller.ErrInvalid
	KindDenied  = "denied"     // the peer may not use this socket
	KindNoAgent = "no_agent"   // guestagent.ErrNoAgent
	KindNoChan  = "no_channel" // guestagent.ErrNoChannel
	KindTimeout = "timeout"    // an exec ran past its TimeoutMS
	KindOther   = "error"
)

// Response is one line from the server.
type Response struct {
	OK     bool               `json:"ok"`
	Error  string             `json:"error,omitempty"`
	Kind   string             `json:"kind,omitempty"`
	Status *controller.Status `json:"status,omitempty"`
	// An exec's output frame: Data written by the command to Stream.
	Stream string `json:"stream,omitempty"`
	Data   []byte `json:"data,omitempty"`
	// Exit is the exec's last answer: the command's exit status.
	Exit *int `json:"exit,omitempty"`
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
	case KindNoAgent:
		e.kind = guestagent.ErrNoAgent
	case KindNoChan:
		e.kind = guestagent.ErrNoChannel
	case KindTimeout:
		e.kind = ErrTimeout
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

var (
	// ErrDenied: the server refused this client.
	ErrDenied = errors.New("permission denied")
	// ErrTimeout: an exec ran past its timeout and was ended.
	ErrTimeout = errors.New("command timed out")
)
