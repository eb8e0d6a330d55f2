package vm

import (
	"context"
	"errors"
	"fmt"
)

// cleanup is one named way back from a start-up step.
type cleanup struct {
	name string
	fn   func() error
	// release: also run when what was made is let go (a link, the lock);
	// otherwise only when start-up fails (a disk made for this VM stays).
	release bool
}

// cleanups collects what start-up steps made, in order, so a failure can
// undo it and the end of the VM (or of one QEMU run) can release it.
type cleanups struct{ list []cleanup }

// onFailure registers fn to run only if a later step fails.
func (c *cleanups) onFailure(name string, fn func() error) {
	c.list = append(c.list, cleanup{name: name, fn: fn})
}

// always registers fn to run on failure and at release.
func (c *cleanups) always(name string, fn func() error) {
	c.list = append(c.list, cleanup{name: name, fn: fn, release: true})
}

// run runs the registered cleanups in reverse order (all of them when
// undoing a failure, only the release ones otherwise) and joins their
// errors, each named.
func (c *cleanups) run(undo bool) error {
	var errs []error
	for i := len(c.list) - 1; i >= 0; i-- {
		cl := c.list[i]
		if !undo && !cl.release {
			continue
		}
		if err := cl.fn(); err != nil {
			errs = append(errs, fmt.Errorf("undoing %s: %w", cl.name, err))
		}
	}
	c.list = nil
	return errors.Join(errs...)
}

// step is one named start-up action; it registers its own cleanups as it
// makes things.
type step struct {
	name string
	do   func(ctx context.Context) error
}

// runSteps runs steps in order. When one fails, every cleanup registered so
// far runs, and the step's error comes back named, joined with any error
// of the undoing.
func runSteps(ctx context.Context, c *cleanups, steps []step) error {
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return errors.Join(err, c.run(true))
		}
		if err := s.do(ctx); err != nil {
			return errors.Join(fmt.Errorf("%s: %w", s.name, err), c.run(true))
		}
	}
	return nil
}
