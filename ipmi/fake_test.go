package ipmi

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/guestagent"
)

// fakeVM is a controller.API that records each call and changes state at
// once, as the controller would.
type fakeVM struct {
	mu    sync.Mutex
	st    controller.Status
	calls []string
}

const fakeUUID = "8f3c2a10-5b6e-4c1d-9a7f-0e2d4b6c8a10"

func newFakeVM() *fakeVM {
	return &fakeVM{st: controller.Status{Name: "vm1", UUID: fakeUUID, Power: controller.Running, BootMode: config.BootUEFI}}
}

func (f *fakeVM) record(name string, args ...any) {
	f.calls = append(f.calls, strings.TrimSpace(fmt.Sprintln(append([]any{name}, args...)...)))
}

// Calls returns the calls so far and forgets them.
func (f *fakeVM) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeVM) set(fn func(*controller.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.st)
}

func (f *fakeVM) Status() controller.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeVM) Subscribe() (<-chan controller.Event, func()) {
	return make(chan controller.Event), func() {}
}

// power moves the VM to `to` when it is in one of from, else ErrState.
func (f *fakeVM) power(name string, needOn bool, to controller.PowerState, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(name, args...)
	if (f.st.Power != controller.Off) != needOn {
		return fmt.Errorf("%s while %s: %w", name, f.st.Power, controller.ErrState)
	}
	f.st.Power = to
	if to == controller.Running && f.st.Boot.Once {
		f.st.Boot = controller.BootOverride{}
	}
	return nil
}

func (f *fakeVM) PowerOn(context.Context) error { return f.power("PowerOn", false, controller.Running) }
func (f *fakeVM) PowerOff(_ context.Context, graceful bool) error {
	return f.power("PowerOff", true, controller.Off, graceful)
}
func (f *fakeVM) Reboot(context.Context) error { return f.power("Reboot", true, controller.Running) }
func (f *fakeVM) Reset(context.Context) error  { return f.power("Reset", true, controller.Running) }
func (f *fakeVM) NMI(context.Context) error    { return f.power("NMI", true, controller.Running) }
func (f *fakeVM) Pause(context.Context) error  { return f.power("Pause", true, controller.Paused) }
func (f *fakeVM) Resume(context.Context) error { return f.power("Resume", true, controller.Running) }

func (f *fakeVM) SetBoot(_ context.Context, b controller.BootOverride) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("SetBoot", b.Device, b.Once)
	f.st.Boot = b
	return nil
}

func (f *fakeVM) SetBootMode(_ context.Context, m config.BootMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("SetBootMode", m)
	f.st.BootMode = m
	return nil
}

func (f *fakeVM) InsertMedia(context.Context, string) error { return controller.ErrState }
func (f *fakeVM) EjectMedia(context.Context) error          { return controller.ErrState }
func (f *fakeVM) AttachSerial(context.Context) (io.ReadWriteCloser, error) {
	return nil, controller.ErrState
}
func (f *fakeVM) DialDisplay(context.Context) (net.Conn, error)    { return nil, controller.ErrState }
func (f *fakeVM) SetDisplayPassword(context.Context, string) error { return nil }
func (f *fakeVM) GuestExec(context.Context, guestagent.Command) (guestagent.Result, error) {
	return guestagent.Result{}, guestagent.ErrNoChannel
}
