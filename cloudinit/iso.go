package cloudinit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/kdomanski/iso9660"
)

// volumeID is the label cloud-init's NoCloud datasource looks for.
const volumeID = "cidata"

// maxISONameLen is the longest extension-less name the iso9660 library keeps
// whole: 30 characters of ECMA-119 file identifier minus the ";1" version.
const maxISONameLen = 28

// WriteISO writes files into an ISO 9660 image with volume id "cidata" at
// path. It writes a temporary file in the same directory and renames it into
// place, so path holds either the old image or the complete new one, and no
// temporary file is left behind on error.
//
// The image is plain ISO 9660 (no Rock Ridge, no Joliet): names must be
// lower-case letters, digits, '-' or '_', at most 28 characters, which the
// guest sees unchanged.
func WriteISO(path string, files map[string][]byte) (err error) {
	iw, err := iso9660.NewWriter()
	if err != nil {
		return fmt.Errorf("creating ISO writer: %w", err)
	}
	defer func() {
		if cerr := iw.Cleanup(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("removing ISO staging directory: %w", cerr))
		}
	}()

	// Sorted only so that the same bad name is reported first every time; the
	// library orders the directory by name itself.
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !validISOName(name) {
			return fmt.Errorf("adding %q to ISO: name must be 1-%d characters of [a-z0-9_-] to survive ISO 9660 without Rock Ridge or Joliet", name, maxISONameLen)
		}
		if err := iw.AddFile(bytes.NewReader(files[name]), name); err != nil {
			return fmt.Errorf("adding %q to ISO: %w", name, err)
		}
	}

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("creating temporary ISO: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	// The library issues many small writes; buffer them.
	w := bufio.NewWriter(tmp)
	if err := iw.WriteTo(w, volumeID); err != nil {
		return fmt.Errorf("writing ISO %s: %w", tmp.Name(), err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing ISO %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing ISO %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing ISO %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("renaming ISO into place: %w", err)
	}
	return nil
}

// validISOName reports whether the iso9660 library stores name as is (it
// lower-cases names, turns other characters into '_', splits at '.' and
// truncates long names, all silently).
func validISOName(name string) bool {
	if name == "" || len(name) > maxISONameLen {
		return false
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
