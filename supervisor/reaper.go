// Package supervisor runs QEMU as a child, reaps every child as PID 1 would,
// and turns signals into a graceful guest power-off.
package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Reaper is the only caller of wait4 in the process. Children started
// through it are registered under the same lock the reaping loop holds, so
// a child that exits at once is still matched to its waiter; every other
// child (an orphan re-parented to us) is reaped and dropped.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan unix.WaitStatus
	// orphans counts reaped children nobody waited for.
	orphans  int
	onOrphan func(pid int, status string)
}

// NewReaper starts reaping. It also makes this process a child subreaper,
// so QEMU's own orphans come to us even when we are not PID 1. onOrphan,
// if not nil, hears of each reaped orphan (called with the lock held: it
// must not start children).
func NewReaper(onOrphan func(pid int, status string)) *Reaper {
	r := &Reaper{waiters: map[int]chan unix.WaitStatus{}, onOrphan: onOrphan}
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, unix.SIGCHLD)
	go func() {
		// SIGCHLD coalesces; the ticker catches a signal lost in between.
		tick := time.NewTicker(time.Second)
		for {
			select {
			case <-sig:
			case <-tick.C:
			}
			r.reap()
		}
	}()
	return r
}

func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- ws
			continue
		}
		r.orphans++
		if r.onOrphan != nil {
			r.onOrphan(pid, describe(ws))
		}
	}
}

// Orphans returns how many unregistered children have been reaped.
func (r *Reaper) Orphans() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.orphans
}

// Start starts cmd and returns a channel that receives its wait status.
// Never call cmd.Wait on it.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiters[cmd.Process.Pid] = ch
	return ch, nil
}

// Output runs cmd to completion and returns its combined output; a
// non-zero exit is an error that carries that output.
func (r *Reaper) Output(cmd *exec.Cmd) ([]byte, error) {
	return r.OutputContext(context.Background(), cmd)
}

// OutputContext is Output that kills cmd if ctx ends first.
func (r *Reaper) OutputContext(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	// A pipe we read to EOF ourselves: exec's own copying goroutines are
	// only joined by cmd.Wait, which the reaper forbids.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	done, err := r.Start(cmd)
	pw.Close()
	if err != nil {
		return nil, err
	}
	// The process handle is a pidfd: a kill after the reaping hits nothing.
	defer context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })()
	var out bytes.Buffer
	_, _ = io.Copy(&out, pr)
	ws := <-done
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return out.Bytes(), fmt.Errorf("%s: %s: %s", cmd.Path, describe(ws), bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}

// describe says how a process ended, naming a signal by number and name
// ("killed by signal 9 (SIGKILL)"): Go's signal strings ("killed") read
// badly after "killed by".
func describe(ws unix.WaitStatus) string {
	if !ws.Signaled() {
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	}
	s := fmt.Sprintf("killed by signal %d", ws.Signal())
	if name := unix.SignalName(ws.Signal()); name != "" {
		s += " (" + name + ")"
	}
	if ws.CoreDump() {
		s += ", core dumped"
	}
	return s
}
