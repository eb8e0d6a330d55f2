package supervisor

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestReaperOutputContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := testReaper().OutputContext(ctx, exec.Command("sleep", "30"))
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("error %v, want sleep killed", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("sleep ran %s after its context ended", d)
	}
	if out, err := testReaper().OutputContext(context.Background(), exec.Command("echo", "ok")); err != nil || string(out) != "ok\n" {
		t.Errorf("echo: %q, %v", out, err)
	}
}
