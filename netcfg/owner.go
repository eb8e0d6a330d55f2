package netcfg

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// A link is named after the NIC's MAC, so two vmrunners of one guest name
// on one host network (containers with --network host and the default
// GUEST_NAME) want the same link. Each run therefore puts its own id in
// the aliases of the links it makes, and holds an abstract unix socket
// named after that id for as long as it lives. Abstract sockets belong to
// the network namespace, as links do, so any vmrunner that sees the link
// can tell whether its maker still runs, across PID namespaces and without
// trusting a PID that may have been reused: the kernel frees the name when
// the maker dies, however it dies.

// ErrLinkInUse says a link of this name belongs to another running vmrunner.
var ErrLinkInUse = errors.New("in use by another running vmrunner")

const runSocketPrefix = "@vmrunner-run-"

var thisRun struct {
	once sync.Once
	id   string
	err  error
}

// runID is this process's run id, made and claimed on first use.
func runID() (string, error) {
	thisRun.once.Do(func() {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			thisRun.err = fmt.Errorf("making a run id: %w", err)
			return
		}
		id := hex.EncodeToString(b)
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			// Kept open until the process ends: it is the proof of life.
			err = unix.Bind(fd, &unix.SockaddrUnix{Name: runSocketPrefix + id})
		}
		if err != nil {
			thisRun.err = fmt.Errorf("claiming run id %s: %w", id, err)
			return
		}
		thisRun.id = id
	})
	return thisRun.id, thisRun.err
}

// runAlive reports whether the run of id still holds its socket.
func runAlive(id string) bool {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return true // cannot tell: leave the link alone
	}
	defer unix.Close(fd)
	return errors.Is(unix.Bind(fd, &unix.SockaddrUnix{Name: runSocketPrefix + id}), unix.EADDRINUSE)
}

// runAlias is the alias this run gives a link whose planned alias is base.
func runAlias(base string) (string, error) {
	id, err := runID()
	if err != nil {
		return "", err
	}
	return base + " run " + id, nil
}

// Claim is what may be done with an existing link of a NIC's name.
type Claim int

const (
	ClaimForeign Claim = iota // another guest's or NIC's: refuse, never touch
	ClaimStale                // a killed run's of this NIC: delete and make anew
	ClaimInUse                // a running vmrunner's of this NIC: refuse, never touch
)

// ClaimLink decides about an existing link with this NIC's name, whose
// alias is alias, from the alias this NIC's links get (base, before the run
// id), whether it is up, and whether a run id's vmrunner still runs. A link
// without a run id (made by an older vmrunner) counts as stale only when
// down, since its maker cannot be asked.
func ClaimLink(alias, base string, up bool, alive func(id string) bool) Claim {
	if alias == base {
		if up {
			return ClaimInUse
		}
		return ClaimStale
	}
	id, ok := strings.CutPrefix(alias, base+" run ")
	if !ok || id == "" || strings.ContainsAny(id, " ") {
		return ClaimForeign
	}
	if alive(id) {
		return ClaimInUse
	}
	return ClaimStale
}

// inUse is the error for a link that is left alone; it is also EEXIST, so
// callers that advise on a taken name still do.
func inUse(kind, name, alias string) error {
	return fmt.Errorf("%s %s (alias %q) is %w; left alone: %w", kind, name, alias, ErrLinkInUse, unix.EEXIST)
}
