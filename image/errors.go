package image

import (
	"errors"
	"fmt"
	"net/http"
)

// The two kinds of failure a caller must tell apart: ErrBadURL is the
// user's to fix (exit 2: a malformed URL, a 4xx answer, a checksum file
// that does not list the image), ErrChecksum means the bytes that arrived
// are not the ones promised (exit 1). Network faults and 5xx answers that
// outlast the retries match neither.
var (
	ErrBadURL   = errors.New("bad image URL")
	ErrChecksum = errors.New("checksum mismatch")
)

// StatusError is an HTTP answer that was not the file.
type StatusError struct {
	URL    string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: HTTP %d %s", e.URL, e.Status, http.StatusText(e.Status))
}

// Is makes a client error (4xx other than timeouts and rate limits) an
// ErrBadURL: asking again will not help, changing the URL will.
func (e *StatusError) Is(target error) bool {
	return target == ErrBadURL && e.Status >= 400 && e.Status < 500 && !retryableStatus(e.Status)
}

// ChecksumError reports a download whose digest is not the expected one.
type ChecksumError struct {
	URL  string
	Algo string // "sha256" or "sha512"
	Want string
	Got  string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s: %s mismatch: expected %s, got %s", e.URL, e.Algo, e.Want, e.Got)
}

func (e *ChecksumError) Is(target error) bool { return target == ErrChecksum }

func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}
