package controller

import (
	"context"
	"time"

	"github.com/vmrunner/vmrunner/guestagent"
	"go.uber.org/zap"
)

// How often the guest agent is asked what the guest reports; variables so
// tests can shorten them. While no agent has ever answered, the pause
// doubles up to guestInfoMax: a guest without an agent costs a sync
// timeout per round, and QEMU's VSERPORT_CHANGE event (the guest opened
// the agent's port) asks at once anyway.
var (
	guestInfoFirst = 5 * time.Second
	guestInfoEvery = 30 * time.Second
	guestInfoMax   = 5 * time.Minute
)

// nextGuestPoll is the pause after a round that took wait: the steady
// pace once an agent has answered (it may be restarting), else twice the
// last pause, from guestInfoEvery up to guestInfoMax.
func nextGuestPoll(wait time.Duration, everAnswered bool) time.Duration {
	if everAnswered {
		return guestInfoEvery
	}
	return min(max(2*wait, guestInfoEvery), guestInfoMax)
}

// maxGuestAddrs bounds the addresses kept: the guest chooses how many it
// reports.
const maxGuestAddrs = 16

// GuestInfo is what the guest's agent last reported.
type GuestInfo struct {
	HostName  string    `json:"hostname"`
	OS        string    `json:"os,omitempty"`
	Kernel    string    `json:"kernel,omitempty"`
	Addresses []string  `json:"addresses,omitempty"` // "eth0 10.0.2.15/24", loopback left out
	Updated   time.Time `json:"updated"`
}

// watchGuest refreshes Status.Guest from the run's agent until ctx ends,
// outside the controller's goroutine; wake (the agent's port opened)
// starts a round at once.
func (c *Controller) watchGuest(ctx context.Context, a *guestagent.Client, wake <-chan struct{}) {
	wait, answered := guestInfoFirst, false
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-wake:
		}
		info, err := guestInfo(ctx, a)
		answered = answered || err == nil
		wait = nextGuestPoll(wait, answered)
		c.log.Debug("guest agent asked", zap.Bool("answered", err == nil), zap.Duration("next", wait))
		c.mu.Lock()
		if ctx.Err() == nil { // the run has not ended meanwhile
			c.status.Guest = nil
			if err == nil {
				c.status.Guest = &info
			}
		}
		c.mu.Unlock()
	}
}

func guestInfo(ctx context.Context, a *guestagent.Client) (GuestInfo, error) {
	name, err := a.HostName(ctx)
	if err != nil {
		return GuestInfo{}, err
	}
	info := GuestInfo{HostName: name, Updated: time.Now()}
	if o, err := a.OSInfo(ctx); err == nil {
		info.OS, info.Kernel = o.PrettyName, o.KernelRelease
	}
	if ifs, err := a.Interfaces(ctx); err == nil {
		for _, i := range ifs {
			if i.Name == "lo" {
				continue
			}
			for _, ad := range i.Addresses {
				if len(info.Addresses) < maxGuestAddrs {
					info.Addresses = append(info.Addresses, i.Name+" "+ad.String())
				}
			}
		}
	}
	return info, nil
}
