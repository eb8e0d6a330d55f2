package image

import (
	"context"
	"errors"
	"fmt"
	"time"
)

const maxBackoff = 30 * time.Second

// transient marks an error worth another try: the network, a timeout, a
// 5xx, 408 or 429. Everything else (a 404, a full disk) ends the fetch.
type transient struct{ err error }

func (t *transient) Error() string { return t.err.Error() }
func (t *transient) Unwrap() error { return t.err }

func retryable(err error) error { return &transient{err} }

// retry runs op until it succeeds or fails for good. Only failures in a
// row that brought no new bytes count against attempts, so a long download
// over a connection that drops now and then still finishes, while a dead
// server is given up on after attempts tries with backoff doubling from
// first up to maxBackoff.
func retry(ctx context.Context, attempts int, first time.Duration, log func(string, ...any),
	what string, op func(context.Context) (progressed bool, err error)) error {
	failures, delay := 0, first
	for {
		progressed, err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		var t *transient
		if !errors.As(err, &t) {
			return err
		}
		if progressed {
			failures, delay = 0, first
		}
		failures++
		if failures >= attempts {
			return fmt.Errorf("%s: giving up after %d attempts: %w", what, failures, t.err)
		}
		log("retrying", "what", what, "attempt", failures, "delay", delay.String(), "error", t.err.Error())
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, maxBackoff)
	}
}
