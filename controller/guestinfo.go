package controller

import (
	"context"
	"time"

	"github.com/vmrunner/vmrunner/guestagent"
)

// How often the guest agent is asked what the guest reports; variables so
// tests can shorten them.
var (
	guestInfoFirst = 5 * time.Second
	guestInfoEvery = 30 * time.Second
)

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
// outside the controller's goroutine; a guest without an agent costs one
// sync timeout per round.
func (c *Controller) watchGuest(ctx context.Context, a *guestagent.Client) {
	wait := guestInfoFirst
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = guestInfoEvery
		info, err := guestInfo(ctx, a)
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
