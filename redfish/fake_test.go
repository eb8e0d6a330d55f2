package redfish

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/guestagent"
)

// fakeVM is a controller.API that records each call and changes state the
// way the controller does, at once.
type fakeVM struct {
	mu    sync.Mutex
	st    controller.Status
	calls []string
	// fail makes the next call of that method return the error.
	fail map[string]error
}

func newFakeVM() *fakeVM {
	return &fakeVM{st: controller.Status{
		Name: "vm1", UUID: "8f3c2a10-5b6e-4c1d-9a7f-0e2d4b6c8a10", Power: controller.Running,
		MemoryMiB: 2048, CPUs: 2, BootMode: config.BootUEFI, Accel: "tcg",
		NICs: []controller.NIC{
			{Index: 1, Mode: "nat", MAC: "52:54:00:12:34:01"},
			{Index: 2, Mode: "bridge", MAC: "52:54:00:12:34:02"},
		},
	}}
}

func (f *fakeVM) call(name string, args ...any) error {
	f.calls = append(f.calls, strings.TrimSuffix(fmt.Sprintln(append([]any{name}, args...)...), "\n"))
	if err := f.fail[name]; err != nil {
		delete(f.fail, name)
		return err
	}
	return nil
}

func (f *fakeVM) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeVM) setFail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail == nil {
		f.fail = map[string]error{}
	}
	f.fail[method] = err
}

func (f *fakeVM) set(fn func(*controller.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.st)
}

func (f *fakeVM) Status() controller.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.NICs = append([]controller.NIC(nil), f.st.NICs...)
	return st
}

func (f *fakeVM) Subscribe() (<-chan controller.Event, func()) {
	ch := make(chan controller.Event)
	return ch, func() {}
}

func (f *fakeVM) power(name string, from []controller.PowerState, to controller.PowerState, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call(name, args...); err != nil {
		return err
	}
	for _, p := range from {
		if f.st.Power == p {
			f.st.Power = to
			f.st.Since = time.Now()
			if f.st.Boot.Once && to == controller.Running {
				f.st.Boot = controller.BootOverride{}
			}
			return nil
		}
	}
	return fmt.Errorf("%s while %s: %w", name, f.st.Power, controller.ErrState)
}

var (
	on  = []controller.PowerState{controller.Running, controller.Paused}
	off = []controller.PowerState{controller.Off}
)

func (f *fakeVM) PowerOn(ctx context.Context) error {
	return f.power("PowerOn", off, controller.Running)
}

func (f *fakeVM) PowerOff(ctx context.Context, graceful bool) error {
	return f.power("PowerOff", on, controller.Off, graceful)
}

func (f *fakeVM) Reboot(ctx context.Context) error { return f.power("Reboot", on, controller.Running) }
func (f *fakeVM) Reset(ctx context.Context) error  { return f.power("Reset", on, controller.Running) }
func (f *fakeVM) NMI(ctx context.Context) error    { return f.power("NMI", on, controller.Running) }
func (f *fakeVM) Pause(ctx context.Context) error {
	return f.power("Pause", []controller.PowerState{controller.Running}, controller.Paused)
}
func (f *fakeVM) Resume(ctx context.Context) error {
	return f.power("Resume", []controller.PowerState{controller.Paused}, controller.Running)
}

func (f *fakeVM) SetBoot(ctx context.Context, b controller.BootOverride) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("SetBoot", b.Device, b.Once); err != nil {
		return err
	}
	f.st.Boot = b
	return nil
}

func (f *fakeVM) SetBootMode(ctx context.Context, m config.BootMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("SetBootMode", m); err != nil {
		return err
	}
	f.st.BootMode = m
	return nil
}

func (f *fakeVM) InsertMedia(ctx context.Context, source string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("InsertMedia", source); err != nil {
		return err
	}
	f.st.Media = controller.Media{Source: source, Path: "/state/media.iso"}
	return nil
}

func (f *fakeVM) EjectMedia(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("EjectMedia"); err != nil {
		return err
	}
	f.st.Media = controller.Media{}
	return nil
}

func (f *fakeVM) AttachSerial(ctx context.Context) (io.ReadWriteCloser, error) {
	return nil, controller.ErrState
}

func (f *fakeVM) DialDisplay(ctx context.Context) (net.Conn, error) {
	return nil, controller.ErrState
}

func (f *fakeVM) SetDisplayPassword(ctx context.Context, password string) error { return nil }

func (f *fakeVM) GuestExec(context.Context, guestagent.Command) (guestagent.Result, error) {
	return guestagent.Result{}, guestagent.ErrNoChannel
}
