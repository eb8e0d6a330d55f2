package image

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestBar(t *testing.T) {
	var out strings.Builder
	bar := Bar(&out, "debian-12")
	bar(0, 4<<20)
	bar(1<<20, 4<<20)
	bar(4<<20, 4<<20)
	s := out.String()
	for _, want := range []string{"\rdebian-12   0% [>", " 25% [======>", "100% [========================]", "4.0 MiB / 4.0 MiB"} {
		if !strings.Contains(s, want) {
			t.Errorf("bar output %q lacks %q", s, want)
		}
	}
	if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		t.Errorf("the bar must end its line once, at completion: %q", s)
	}

	out.Reset()
	Bar(&out, "x")(3<<30, -1)
	if !strings.Contains(out.String(), "3.00 GiB") || strings.Contains(out.String(), "%") {
		t.Errorf("unknown total: %q", out.String())
	}
}

func TestLogProgress(t *testing.T) {
	var lines []string
	log := func(msg string, kv ...any) { lines = append(lines, fmt.Sprint(msg, kv)) }
	p := LogProgress(log, time.Hour, 25)
	total := int64(1000)
	for done := int64(0); done <= total; done += 10 {
		p(done, total)
	}
	// First call, then 25, 50, 75 and 100 percent.
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if !strings.Contains(lines[4], "percent 100") {
		t.Errorf("last line %q", lines[4])
	}

	lines = nil
	p = LogProgress(log, 0, 0) // no time limit: every call logs
	p(1, -1)
	p(2, -1)
	if len(lines) != 2 || strings.Contains(lines[1], "percent") {
		t.Errorf("unknown total: %q", lines)
	}
}

func TestThrottle(t *testing.T) {
	var calls []int64
	p := throttle(func(done, _ int64) { calls = append(calls, done) }, time.Hour)
	for i := int64(1); i <= 100; i++ {
		p(i, 100)
	}
	if len(calls) != 2 || calls[0] != 1 || calls[1] != 100 {
		t.Errorf("calls %v, want the first and the last", calls)
	}
	throttle(nil, 0)(1, 1) // a nil Progress is allowed
}
