package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestFetchHelperProcess is not a test: TestFetchConcurrentProcesses runs
// the test binary again with it selected, as a second vmrunner would.
func TestFetchHelperProcess(t *testing.T) {
	url := os.Getenv("IMAGE_TEST_HELPER_URL")
	if url == "" {
		t.Skip("helper process only")
	}
	p, err := Fetch(context.Background(), FetchRequest{URL: url, CacheDir: os.Getenv("IMAGE_TEST_HELPER_CACHE"),
		SHA256: os.Getenv("IMAGE_TEST_HELPER_SHA256"),
		Log:    func(msg string, _ ...any) { fmt.Println("LOG", msg) }})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("PATH", p)
}

func TestFetchConcurrentProcessesDownloadOnce(t *testing.T) {
	data := randomBytes(t, 2<<20)
	// About 1 s of download: long enough for the processes to meet.
	s := newFileServer(t, map[string][]byte{"/shared.qcow2": data}, behaviour{delay: 15 * time.Millisecond})
	dir := t.TempDir()
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFetchHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "IMAGE_TEST_HELPER_URL="+s.URL+"/shared.qcow2",
			"IMAGE_TEST_HELPER_CACHE="+dir, "IMAGE_TEST_HELPER_SHA256="+sha256Hex(data))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	var paths []string
	waited := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i])
		}
		_, after, ok := strings.Cut(outs[i].String(), "PATH ")
		if !ok {
			t.Fatalf("helper %d printed no path:\n%s", i, outs[i])
		}
		paths = append(paths, strings.TrimSpace(strings.SplitN(after, "\n", 2)[0]))
		if strings.Contains(outs[i].String(), "LOG waiting for another download") {
			waited++
		}
	}
	if waited == 0 {
		t.Error("no helper waited for another's download: they did not run at the same time")
	}
	for i, p := range paths {
		if p != paths[0] {
			t.Errorf("helper %d got %s, helper 0 got %s", i, p, paths[0])
		}
	}
	assertFile(t, paths[0], data)
	if n := s.gets.Load(); n != 1 {
		t.Errorf("%d GETs from 3 processes, want 1", n)
	}
}
