// Package controller owns one VM across QEMU runs: it is the only caller of
// the supervisor and of QMP, and it serialises every change of the VM's
// state in one goroutine. Services (the control socket, Redfish, the web
// console, the guest agent) see only API, so each is testable with a fake
// and none can race another over QEMU.
package controller

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/guestagent"
)

// PowerState is where the VM is in its life.
type PowerState string

const (
	Off      PowerState = "off"      // no QEMU process
	Starting PowerState = "starting" // per-run steps and QEMU start-up
	Running  PowerState = "running"  // QEMU runs the guest
	Paused   PowerState = "paused"   // QEMU runs, vCPUs stopped
	Stopping PowerState = "stopping" // a stop was asked for; QEMU still runs
)

// BootDevice is what the next start boots from.
type BootDevice string

const (
	BootDefault BootDevice = ""        // the configured order (an installer CD first, then the disk)
	BootDisk    BootDevice = "disk"    // the VM's disk
	BootCD      BootDevice = "cd"      // the CD drive's medium
	BootNetwork BootDevice = "network" // PXE from the boot NIC (NETWORK_BOOT, else the first)
)

// BootOverride is the boot device of the next starts.
type BootOverride struct {
	Device BootDevice `json:"device"`
	// Once returns the setting to BootDefault after one start.
	Once bool `json:"once"`
}

// Media is the medium of the VM's CD drive.
type Media struct {
	Source string `json:"source"` // what was inserted: an http(s) URL or a local path; "" when empty
	Path   string `json:"path"`   // the local file attached to the drive
}

// NIC is one guest NIC as a user sees it.
type NIC struct {
	Index    int      `json:"index"`
	Mode     string   `json:"mode"`
	MAC      string   `json:"mac"`
	Forwards []string `json:"forwards,omitempty"` // "tcp 0.0.0.0:2222 -> 22"
}

// Status is a snapshot of the VM.
type Status struct {
	Name      string          `json:"name"`
	UUID      string          `json:"uuid"`
	Power     PowerState      `json:"power"`
	Since     time.Time       `json:"since"`               // when Power last changed
	StartedAt time.Time       `json:"started_at,omitzero"` // when the running QEMU started; zero when off
	PID       int             `json:"pid,omitempty"`
	Accel     string          `json:"accel"`
	MemoryMiB int             `json:"memory_mib"`
	CPUs      int             `json:"cpus"`
	BootMode  config.BootMode `json:"boot_mode"` // the firmware of the next start
	Boot      BootOverride    `json:"boot"`
	Media     Media           `json:"media"`
	NICs      []NIC           `json:"nics"`
	LastExit  string          `json:"last_exit,omitempty"` // how the last QEMU run ended
	// Guest is what the guest agent last reported; nil while none answers.
	Guest *GuestInfo `json:"guest,omitempty"`
}

// Event is one transition of the power state.
type Event struct {
	Time   time.Time
	From   PowerState
	To     PowerState
	Reason string
}

// Errors a service maps to its protocol's answers.
var (
	// ErrState: the action does not apply in the current power state
	// (resume while running, NMI while off).
	ErrState = errors.New("not possible in the VM's current power state")
	// ErrInvalid: an argument is refused (an unknown boot device, a
	// file:// medium); the error's text says what is accepted.
	ErrInvalid = errors.New("invalid argument")
)

// API is the controller as services see it. Every method is safe to call
// from any goroutine; changes are applied one at a time, in order.
// Methods return once the controller has acted (QEMU started, the ACPI
// button pressed, the reset sent); they do not wait for the guest.
type API interface {
	Status() Status
	// Subscribe streams power transitions until cancel is called.
	Subscribe() (events <-chan Event, cancel func())

	PowerOn(ctx context.Context) error
	// PowerOff presses the ACPI power button (graceful) and stops QEMU by
	// force after SHUTDOWN_TIMEOUT; graceful=false stops it at once.
	PowerOff(ctx context.Context, graceful bool) error
	// Reboot is a graceful restart: power off as PowerOff(true), then on.
	Reboot(ctx context.Context) error
	// Reset is a hard reset. When the next start's boot device or firmware
	// differs from the running QEMU's, QEMU is restarted instead, so the
	// new setting takes effect.
	Reset(ctx context.Context) error
	NMI(ctx context.Context) error
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error

	SetBoot(ctx context.Context, b BootOverride) error
	// SetBootMode switches the firmware (uefi or legacy) from the next start.
	SetBootMode(ctx context.Context, m config.BootMode) error
	// InsertMedia puts source (an http(s) URL, fetched through the image
	// cache: verified, size-capped; or a local path) in the CD drive, live
	// when QEMU runs, else for the next start.
	InsertMedia(ctx context.Context, source string) error
	EjectMedia(ctx context.Context) error

	// AttachSerial joins the serial console: reads return the guest's
	// output from now on, writes are typed into the guest. Several may be
	// attached at once. Close detaches.
	AttachSerial(ctx context.Context) (io.ReadWriteCloser, error)
	// DialDisplay connects to the running QEMU's display (a unix socket in
	// the state folder without VNC auth) and returns plain RFB bytes, no
	// websocket framing; ErrState when no QEMU runs or the VM has no
	// graphics.
	DialDisplay(ctx context.Context) (net.Conn, error)
	// SetDisplayPassword changes the VNC password of the running QEMU and
	// of the next starts; ErrInvalid for one VNC cannot use (1-8
	// printable ASCII characters).
	SetDisplayPassword(ctx context.Context, password string) error

	// GuestExec runs a command in the guest through the QEMU guest agent,
	// streaming its output to cmd.Stdout and cmd.Stderr; ErrState when no
	// QEMU runs, guestagent.ErrNoAgent or ErrNoChannel when no agent
	// answers. When ctx ends first the command is sent SIGTERM.
	GuestExec(ctx context.Context, cmd guestagent.Command) (guestagent.Result, error)
}
