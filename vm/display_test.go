package vm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepareVNCPassword(t *testing.T) {
	needQemuImg(t)
	data := filepath.Join(t.TempDir(), "data")
	env := prepareEnv(data)
	env["GRAPHICS"], env["PERSIST"] = "vnc", "1"

	prep := mustPrepare(t, preparePlan(t, env, false))
	prep.Release()
	p := preparePlan(t, env, false)
	first := prep.VNCPassword
	if !prep.VNCPasswordNew || len(first) != 8 || strings.Trim(first, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
		t.Fatalf("generated password %q (new %v): want 8 letters or digits, marked new", first, prep.VNCPasswordNew)
	}
	checkMode(t, p.Paths.VNCPassword, 0o600)
	checkMode(t, p.Paths.VNCDir, 0o700|os.ModeDir)
	if b, _ := os.ReadFile(p.Paths.VNCPassword); string(b) != first {
		t.Errorf("password file holds %q, want %q without a newline", b, first)
	}

	prep = mustPrepare(t, p)
	prep.Release()
	if prep.VNCPassword != first || prep.VNCPasswordNew {
		t.Errorf("second start: %q (new %v), want the kept %q, not logged again", prep.VNCPassword, prep.VNCPasswordNew, first)
	}

	env["VNC_PASSWORD"] = "mine-123"
	prep = mustPrepare(t, preparePlan(t, env, false))
	prep.Release()
	if b, _ := os.ReadFile(p.Paths.VNCPassword); prep.VNCPassword != "mine-123" || prep.VNCPasswordNew || string(b) != "mine-123" {
		t.Errorf("VNC_PASSWORD: prepared %q (new %v), file %q", prep.VNCPassword, prep.VNCPasswordNew, b)
	}
	checkMode(t, p.Paths.VNCPassword, 0o600)

	// Changed while running (the controller), kept for the next start.
	delete(env, "VNC_PASSWORD")
	if err := p.Paths.SaveVNCPassword("live-pw"); err != nil {
		t.Fatal(err)
	}
	checkMode(t, p.Paths.VNCPassword, 0o600)
	prep = mustPrepare(t, preparePlan(t, env, false))
	prep.Release()
	if prep.VNCPassword != "live-pw" {
		t.Errorf("after SaveVNCPassword the next start uses %q", prep.VNCPassword)
	}
}

func TestPrepareNoDisplayNoPassword(t *testing.T) {
	needQemuImg(t)
	data := filepath.Join(t.TempDir(), "data")
	env := prepareEnv(data)
	env["PERSIST"] = "1"
	p := preparePlan(t, env, false)
	mustPrepare(t, p).Release()
	for _, f := range []string{p.Paths.VNCPassword, p.Paths.VNCDir} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s made without graphics", f)
		}
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != want {
		t.Errorf("%s mode %v, want %v", path, st.Mode(), want)
	}
}
