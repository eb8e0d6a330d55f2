package image

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// throttle passes on at most one call per every, plus the first and the
// last (done == total), so callers may draw or log on each call.
func throttle(fn func(done, total int64), every time.Duration) func(done, total int64) {
	if fn == nil {
		return func(int64, int64) {}
	}
	var last time.Time
	return func(done, total int64) {
		now := time.Now()
		if !last.IsZero() && done != total && now.Sub(last) < every {
			return
		}
		last = now
		fn(done, total)
	}
}

// rate measures bytes per second since the first report.
type rate struct {
	start     time.Time
	startDone int64
}

func (r *rate) perSecond(done int64) float64 {
	now := time.Now()
	if r.start.IsZero() {
		r.start, r.startDone = now, done
		return 0
	}
	secs := now.Sub(r.start).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(done-r.startDone) / secs
}

// Bar returns a Progress function that redraws one line on w (a terminal):
//
//	ubuntu-24.04  42% [=========>             ]  251.3 MiB / 598.0 MiB   85.2 MiB/s
//
// and ends the line when the download completes.
func Bar(w io.Writer, label string) func(done, total int64) {
	var r rate
	const width = 24
	return func(done, total int64) {
		speed := r.perSecond(done)
		if total <= 0 {
			fmt.Fprintf(w, "\r%s %s  %s/s\x1b[K", label, size(done), size(int64(speed)))
			return
		}
		filled := int(float64(width) * float64(done) / float64(total))
		filled = min(max(filled, 0), width)
		bar := strings.Repeat("=", filled)
		if filled < width {
			bar += ">" + strings.Repeat(" ", width-filled-1)
		}
		fmt.Fprintf(w, "\r%s %3d%% [%s] %s / %s  %s/s\x1b[K", label, percent(done, total), bar,
			size(done), size(total), size(int64(speed)))
		if done == total {
			fmt.Fprintln(w)
		}
	}
}

// LogProgress returns a Progress function that logs a structured line when
// every has passed or the download crossed another step percent since the
// last line, and at completion: a container's log then shows a download
// advancing without a line per chunk.
func LogProgress(log func(msg string, keysAndValues ...any), every time.Duration, step int) func(done, total int64) {
	var r rate
	var last time.Time
	lastPct := -1
	return func(done, total int64) {
		speed := r.perSecond(done)
		pct := percent(done, total)
		now := time.Now()
		due := last.IsZero() || done == total || now.Sub(last) >= every ||
			(step > 0 && total > 0 && pct/step != lastPct/step)
		if !due {
			return
		}
		last, lastPct = now, pct
		kv := []any{"bytes", done, "bytes_per_s", int64(speed)}
		if total > 0 {
			kv = append(kv, "total", total, "percent", pct)
		}
		log("download progress", kv...)
	}
}

func percent(done, total int64) int {
	if total <= 0 {
		return 0
	}
	return int(100 * float64(done) / float64(total))
}

func size(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
