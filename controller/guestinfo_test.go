package controller

import (
	"testing"
	"time"

	"github.com/vmrunner/vmrunner/qemu"
	"go.uber.org/zap"
)

func TestNextGuestPoll(t *testing.T) {
	tests := []struct {
		wait     time.Duration
		answered bool
		want     time.Duration
	}{
		{guestInfoFirst, true, guestInfoEvery},
		{guestInfoEvery, true, guestInfoEvery},
		{4 * time.Minute, true, guestInfoEvery}, // an agent that answered once: the steady pace again
		{guestInfoFirst, false, guestInfoEvery},
		{guestInfoEvery, false, time.Minute},
		{2 * time.Minute, false, 4 * time.Minute},
		{4 * time.Minute, false, guestInfoMax},
		{guestInfoMax, false, guestInfoMax},
	}
	for _, tt := range tests {
		if got := nextGuestPoll(tt.wait, tt.answered); got != tt.want {
			t.Errorf("nextGuestPoll(%s, %v) = %s, want %s", tt.wait, tt.answered, got, tt.want)
		}
	}
}

// TestGuestPollsWithoutAgent counts the rounds a guest without an agent
// costs in its first hour: each is a sync timeout (3 s) on the channel.
func TestGuestPollsWithoutAgent(t *testing.T) {
	rounds, at, wait := 0, time.Duration(0), guestInfoFirst
	for at+wait <= time.Hour {
		at += wait
		rounds++
		wait = nextGuestPoll(wait, false)
	}
	t.Logf("a guest without an agent: %d rounds in its first hour (a pause of %s before: %d)", rounds, guestInfoEvery, int(time.Hour/guestInfoEvery))
	if rounds > 20 {
		t.Errorf("%d rounds in an hour", rounds)
	}
}

// TestAgentPortOpenWakes: QEMU's VSERPORT_CHANGE for the agent's port,
// opened, starts a round; other ports, a close, or a round already due
// change nothing and never block the loop.
func TestAgentPortOpenWakes(t *testing.T) {
	c := &Controller{log: zap.NewNop()}
	r := &run{gen: 1, agentOpen: make(chan struct{}, 1)}
	c.cur = r
	ev := func(data map[string]any) runEvent {
		return runEvent{gen: 1, ev: qemu.Event{Event: "VSERPORT_CHANGE", Data: data}}
	}
	c.onEvent(ev(map[string]any{"id": "other", "open": true}))
	c.onEvent(ev(map[string]any{"id": qemu.GuestAgentPort, "open": false}))
	select {
	case <-r.agentOpen:
		t.Fatal("woken by another port or a close")
	default:
	}
	c.onEvent(ev(map[string]any{"id": qemu.GuestAgentPort, "open": true}))
	c.onEvent(ev(map[string]any{"id": qemu.GuestAgentPort, "open": true})) // must not block
	select {
	case <-r.agentOpen:
	default:
		t.Fatal("the agent's port opened and no round was started")
	}
}
