package netcfg

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestClaimLink(t *testing.T) {
	const base = "vmrunner web NIC 1"
	alive := func(id string) bool { return id == "live" }
	for _, tt := range []struct {
		alias string
		up    bool
		want  Claim
	}{
		{base + " run dead", true, ClaimStale}, // a killed run's macvtap stays up
		{base + " run dead", false, ClaimStale},
		{base + " run live", true, ClaimInUse}, // another container's running VM
		{base + " run live", false, ClaimInUse},
		{base, false, ClaimStale}, // an older vmrunner's, down
		{base, true, ClaimInUse},  // an older vmrunner's, up: cannot ask it
		{"vmrunner web NIC 2 run dead", false, ClaimForeign},
		{"vmrunner web2 NIC 1 run dead", false, ClaimForeign},
		{base + " run ", false, ClaimForeign},
		{base + " run a b", false, ClaimForeign},
		{"", false, ClaimForeign},
		{"someone else's", true, ClaimForeign},
	} {
		if got := ClaimLink(tt.alias, base, tt.up, alive); got != tt.want {
			t.Errorf("ClaimLink(%q, up=%v) = %d, want %d", tt.alias, tt.up, got, tt.want)
		}
	}
}

// TestRunIDProvesLife: this process's run id is alive while it runs, an id
// nobody holds is not, and the alias carries the id.
func TestRunIDProvesLife(t *testing.T) {
	id, err := runID()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := runID(); again != id || len(id) != 16 {
		t.Errorf("run ids %q then %q; want one 16-digit id", id, again)
	}
	if !runAlive(id) {
		t.Errorf("this run's id %s is not alive", id)
	}
	if runAlive("0000000000000000") {
		t.Error("an id nobody holds is alive")
	}
	alias, err := runAlias("vmrunner web NIC 1")
	if err != nil || alias != "vmrunner web NIC 1 run "+id {
		t.Errorf("runAlias = %q, %v", alias, err)
	}
	if got := ClaimLink(alias, "vmrunner web NIC 1", true, runAlive); got != ClaimInUse {
		t.Errorf("a link of this live run: claim %d, want ClaimInUse", got)
	}
}

func TestInUseIsEEXIST(t *testing.T) {
	err := inUse("macvtap", "vmv525400000001", "vmrunner web NIC 1 run abc")
	if !errors.Is(err, ErrLinkInUse) || !errors.Is(err, unix.EEXIST) {
		t.Errorf("%v: want ErrLinkInUse and EEXIST", err)
	}
	if !strings.Contains(err.Error(), "left alone") {
		t.Errorf("%v does not say the link is left alone", err)
	}
}
