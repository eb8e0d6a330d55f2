package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// Event is a QMP event as go-qemu reports it.
type Event = qmp.Event

// Monitor is a connected QMP session. Its events are always drained (an
// undrained go-qemu event channel blocks every later command).
type Monitor struct {
	mon  *qmp.SocketMonitor
	done chan struct{}
}

// Dial connects to the QMP socket at path, retrying until QEMU has created
// it or ctx ends, and passes every event to onEvent from one goroutine.
func Dial(ctx context.Context, path string, onEvent func(Event)) (*Monitor, error) {
	for {
		m, err := dialOnce(ctx, path, onEvent)
		if err == nil {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("QMP at %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func dialOnce(ctx context.Context, path string, onEvent func(Event)) (*Monitor, error) {
	mon, err := qmp.NewSocketMonitor("unix", path, time.Second)
	if err != nil {
		return nil, err
	}
	// go-qemu's handshake has no deadline of its own: a QEMU that accepted
	// but never greets must not hang us.
	connected := make(chan error, 1)
	go func() { connected <- mon.Connect() }()
	select {
	case err = <-connected:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(5 * time.Second):
		err = errors.New("no QMP greeting within 5s")
	}
	if err != nil {
		_ = mon.Disconnect()
		return nil, err
	}
	events, err := mon.Events(ctx)
	if err != nil {
		_ = mon.Disconnect()
		return nil, err
	}
	m := &Monitor{mon: mon, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for ev := range events {
			if onEvent != nil {
				onEvent(ev)
			}
		}
	}()
	return m, nil
}

// Done is closed when the QMP connection has ended (QEMU exited).
func (m *Monitor) Done() <-chan struct{} { return m.done }

// Close ends the session.
func (m *Monitor) Close() error { return m.mon.Disconnect() }

// run sends one command. go-qemu reads replies line by line with a
// bounded buffer, so only commands with small replies belong here (never
// query-qmp-schema or a large query-block).
func (m *Monitor) run(cmd string, reply any) error { return m.runArgs(cmd, nil, reply) }

func (m *Monitor) runArgs(cmd string, args map[string]any, reply any) error {
	msg := map[string]any{"execute": cmd}
	if args != nil {
		msg["arguments"] = args
	}
	req, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	raw, err := m.mon.Run(req)
	if err != nil {
		return fmt.Errorf("QMP %s: %w", cmd, err)
	}
	if reply == nil {
		return nil
	}
	var r struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("QMP %s reply: %w", cmd, err)
	}
	return json.Unmarshal(r.Return, reply)
}

// Powerdown presses the ACPI power button.
func (m *Monitor) Powerdown() error { return m.run("system_powerdown", nil) }

// Quit ends QEMU at once (the guest gets no say).
func (m *Monitor) Quit() error { return m.run("quit", nil) }

// Reset is a hard reset of the machine (system_reset).
func (m *Monitor) Reset() error { return m.run("system_reset", nil) }

// NMI injects a non-maskable interrupt into every vCPU.
func (m *Monitor) NMI() error { return m.run("inject-nmi", nil) }

// Stop pauses the vCPUs.
func (m *Monitor) Stop() error { return m.run("stop", nil) }

// Cont resumes paused vCPUs.
func (m *Monitor) Cont() error { return m.run("cont", nil) }

// ChangeMedium puts the raw image at path into the removable drive of the
// device named id, opening its tray by force (a guest that locked it is
// overruled, as a real drive's eject hole would).
func (m *Monitor) ChangeMedium(id, path string) error {
	return m.runArgs("blockdev-change-medium", map[string]any{
		"id": id, "filename": path, "format": "raw", "read-only-mode": "read-only",
	}, nil)
}

// Eject removes the medium of the device named id, by force.
func (m *Monitor) Eject(id string) error {
	return m.runArgs("eject", map[string]any{"id": id, "force": true}, nil)
}
