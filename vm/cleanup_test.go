package vm

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestStepsUndoAndRelease: a failing step undoes every earlier cleanup in
// reverse order and names itself and each failing cleanup; release runs
// only the release ones.
func TestStepsUndoAndRelease(t *testing.T) {
	var order []string
	record := func(name string, err error) func() error {
		return func() error { order = append(order, name); return err }
	}
	var c cleanups
	err := runSteps(context.Background(), &c, []step{
		{"made a file", func(context.Context) error {
			c.onFailure("file", record("file", nil))
			return nil
		}},
		{"took a lock", func(context.Context) error {
			c.always("lock", record("lock", errors.New("close failed")))
			return nil
		}},
		{"made a link", func(context.Context) error { return errors.New("no such bridge") }},
	})
	if got := strings.Join(order, ","); got != "lock,file" {
		t.Errorf("undo order %s, want lock,file", got)
	}
	for _, want := range []string{"made a link: no such bridge", "undoing lock: close failed"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if len(c.list) != 0 {
		t.Error("cleanups left registered after the undo")
	}

	order = nil
	c = cleanups{}
	c.onFailure("disk", record("disk", nil))
	c.always("link", record("link", nil))
	c.always("lock", record("lock", nil))
	if err := c.run(false); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ","); got != "lock,link" {
		t.Errorf("release ran %s, want lock,link (the disk stays)", got)
	}
}

// TestStepsStopWhenCanceled: a canceled start undoes what was made.
func TestStepsStopWhenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	undone := false
	var c cleanups
	err := runSteps(ctx, &c, []step{
		{"first", func(context.Context) error {
			c.onFailure("first", func() error { undone = true; return nil })
			cancel()
			return nil
		}},
		{"second", func(context.Context) error { t.Error("ran after the cancel"); return nil }},
	})
	if !errors.Is(err, context.Canceled) || !undone {
		t.Errorf("err %v, undone %v", err, undone)
	}
}
