package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The reaper calls wait4(-1), so every test in this package starts its
// children through this one reaper and never through exec.Cmd.Run/Wait.
var testReaper = sync.OnceValue(func() *Reaper {
	return NewReaper(func(pid int, status string) {
		orphanLog.Lock()
		defer orphanLog.Unlock()
		orphanLog.byPID[pid] = status
	})
})

// orphanLog records what onOrphan heard.
var orphanLog = struct {
	sync.Mutex
	byPID map[int]string
}{byPID: map[int]string{}}

func orphanStatus(pid int) (string, bool) {
	orphanLog.Lock()
	defer orphanLog.Unlock()
	s, ok := orphanLog.byPID[pid]
	return s, ok
}

// waitStatus waits for a started child's status, failing after a while.
func waitStatus(t *testing.T, ch <-chan unix.WaitStatus) unix.WaitStatus {
	t.Helper()
	select {
	case ws := <-ch:
		return ws
	case <-time.After(10 * time.Second):
		t.Fatal("no wait status within 10s")
		return 0
	}
}

func startSh(t *testing.T, r *Reaper, script string) <-chan unix.WaitStatus {
	t.Helper()
	ch, err := r.Start(exec.Command("sh", "-c", script))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestReaperExitStatus(t *testing.T) {
	r := testReaper()
	for _, code := range []int{0, 1, 7, 255} {
		ws := waitStatus(t, startSh(t, r, fmt.Sprintf("exit %d", code)))
		if !ws.Exited() || ws.ExitStatus() != code {
			t.Errorf("exit %d: status %v (exited %v, code %d)", code, ws, ws.Exited(), ws.ExitStatus())
		}
	}
	ws := waitStatus(t, startSh(t, r, "kill -TERM $$"))
	if !ws.Signaled() || ws.Signal() != unix.SIGTERM {
		t.Errorf("kill -TERM: status %v (signaled %v, signal %v)", ws, ws.Signaled(), ws.Signal())
	}
}

func TestReaperIsSubreaper(t *testing.T) {
	testReaper()
	var v int32
	if err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if v != 1 {
		t.Errorf("PR_GET_CHILD_SUBREAPER = %d, want 1", v)
	}
}

// TestReaperReapsOrphans starts a shell that leaves a grandchild behind.
// The orphan must be re-parented to this process (a subreaper), be reaped
// when it ends, and not disturb the registered child's status.
func TestReaperReapsOrphans(t *testing.T) {
	r := testReaper()
	before := r.Orphans()
	dir := t.TempDir()
	ppidFile, pidFile := filepath.Join(dir, "ppid"), filepath.Join(dir, "pid")
	// The grandchild notes its pid, then its parent after the shell has
	// exited, and ends with status 5.
	script := `sh -c 'echo $$ >` + pidFile + `; sleep 0.3; grep PPid: /proc/$$/status >` + ppidFile + `; exit 5' & exit 3`
	ws := waitStatus(t, startSh(t, r, script))
	if !ws.Exited() || ws.ExitStatus() != 3 {
		t.Fatalf("registered child: status %v, want exit 3", ws)
	}
	// Wait until the orphan has been reaped: its pid is known and
	// onOrphan heard of it.
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(pidFile); err == nil && pid == 0 {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if _, ok := orphanStatus(pid); pid != 0 && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orphan %d was not reaped within 10s (Orphans() = %d)", pid, r.Orphans())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.Orphans() <= before {
		t.Errorf("Orphans() = %d, was %d before", r.Orphans(), before)
	}
	if status, _ := orphanStatus(pid); status != "exit status 5" {
		t.Errorf("onOrphan heard %q for the orphan %d; want exit status 5", status, pid)
	}
	b, err := os.ReadFile(ppidFile)
	if err != nil {
		t.Fatal(err)
	}
	ppid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(b)), "PPid:")))
	if ppid != os.Getpid() {
		t.Errorf("orphan's parent was %d (%q), want this process %d", ppid, b, os.Getpid())
	}
}

func TestReaperConcurrent(t *testing.T) {
	r := testReaper()
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			script := fmt.Sprintf("exit %d", i)
			if i%4 == 0 {
				script = fmt.Sprintf("sleep 0.05 & exit %d", i)
			}
			ch, err := r.Start(exec.Command("sh", "-c", script))
			if err != nil {
				errs <- err.Error()
				return
			}
			select {
			case ws := <-ch:
				if !ws.Exited() || ws.ExitStatus() != i {
					errs <- fmt.Sprintf("child %d: status %v (code %d)", i, ws, ws.ExitStatus())
				}
			case <-time.After(20 * time.Second):
				errs <- fmt.Sprintf("child %d: no status", i)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestReaperImmediateExit(t *testing.T) {
	r := testReaper()
	for range 20 {
		ch, err := r.Start(exec.Command("true"))
		if err != nil {
			t.Fatal(err)
		}
		if ws := waitStatus(t, ch); !ws.Exited() || ws.ExitStatus() != 0 {
			t.Errorf("true: status %v", ws)
		}
	}
}

func TestReaperOutput(t *testing.T) {
	r := testReaper()
	out, err := r.Output(exec.Command("sh", "-c", "echo out; echo err >&2; echo more"))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "out\nerr\nmore\n" {
		t.Errorf("output %q", out)
	}

	out, err = r.Output(exec.Command("sh", "-c", "echo partial; echo boom >&2; exit 3"))
	if err == nil {
		t.Fatal("exit 3 gave no error")
	}
	if string(out) != "partial\nboom\n" {
		t.Errorf("output %q", out)
	}
	for _, part := range []string{"exit status 3", "partial\nboom", "sh"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}

	_, err = r.Output(exec.Command("sh", "-c", "kill -KILL $$"))
	if err == nil || !strings.Contains(err.Error(), "killed by signal 9 (SIGKILL)") {
		t.Errorf("SIGKILL: error %v", err)
	}

	if _, err := r.Output(exec.Command(filepath.Join(t.TempDir(), "missing"))); err == nil {
		t.Errorf("a missing program gave no error")
	}

	big := strings.Repeat("x", 1<<20)
	out, err = r.Output(exec.Command("sh", "-c", `head -c 1048576 /dev/zero | tr '\0' x`))
	if err != nil || string(out) != big {
		t.Errorf("1 MiB of output: %d bytes, %v", len(out), err)
	}
}

func TestDescribe(t *testing.T) {
	// Wait statuses as the kernel encodes them.
	exited := unix.WaitStatus(7 << 8)
	signaled := unix.WaitStatus(unix.SIGKILL)
	if got := describe(exited); got != "exit status 7" {
		t.Errorf("describe(exit 7) = %q", got)
	}
	if got := describe(signaled); got != "killed by signal 9 (SIGKILL)" {
		t.Errorf("describe(SIGKILL) = %q", got)
	}
	dumped := unix.WaitStatus(unix.SIGSEGV | 0x80)
	if got := describe(dumped); got != "killed by signal 11 (SIGSEGV), core dumped" {
		t.Errorf("describe(SIGSEGV with core) = %q", got)
	}
	if got := describe(unix.WaitStatus(40)); got != "killed by signal 40" {
		t.Errorf("describe(a real-time signal) = %q", got)
	}
}
