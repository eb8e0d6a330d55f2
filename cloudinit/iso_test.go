package cloudinit

import (
	"bytes"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kdomanski/iso9660"
)

// readISO returns the label and root files of the image at path.
func readISO(t *testing.T, path string) (string, map[string][]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		t.Fatalf("OpenImage: %v", err)
	}
	label, err := img.Label()
	if err != nil {
		t.Fatalf("Label: %v", err)
	}
	root, err := img.RootDir()
	if err != nil {
		t.Fatalf("RootDir: %v", err)
	}
	children, err := root.GetChildren()
	if err != nil {
		t.Fatalf("GetChildren: %v", err)
	}
	files := map[string][]byte{}
	for _, c := range children {
		data, err := io.ReadAll(c.Reader())
		if err != nil {
			t.Fatalf("reading %s: %v", c.Name(), err)
		}
		files[c.Name()] = data
	}
	return label, files
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteISORoundTrip(t *testing.T) {
	s := testSeed()
	s.UserData = []byte("#cloud-config\nruncmd: [\"echo hi\"]\n")
	// Larger than one 2048-byte sector, to cover multi-sector files.
	s.NetworkConfig = []byte("version: 2\n" + strings.Repeat("# padding\n", 500))
	files := mustFiles(t, s)

	dir := t.TempDir()
	path := filepath.Join(dir, "seed.iso")
	// An existing image is replaced.
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteISO(path, files); err != nil {
		t.Fatalf("WriteISO: %v", err)
	}

	label, got := readISO(t, path)
	if label != "cidata" {
		t.Errorf("volume id = %q, want cidata", label)
	}
	if gotNames, wantNames := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(files)); !slices.Equal(gotNames, wantNames) {
		t.Fatalf("ISO files = %q, want %q", gotNames, wantNames)
	}
	for name, want := range files {
		if !bytes.Equal(got[name], want) {
			t.Errorf("%s in ISO = %q, want %q", name, got[name], want)
		}
	}
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"seed.iso"}) {
		t.Errorf("directory holds %q, want only seed.iso", names)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The image holds the password hash.
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("ISO mode = %v, want no group or other access", perm)
	}
}

func TestWriteISOErrorsLeaveNothingBehind(t *testing.T) {
	tests := []struct {
		desc  string
		files map[string][]byte
	}{
		{"upper case", map[string][]byte{"META-DATA": nil}},
		{"dot", map[string][]byte{"user.data": nil}},
		{"slash", map[string][]byte{"dir/user-data": nil}},
		{"empty name", map[string][]byte{"": nil}},
		{"too long", map[string][]byte{strings.Repeat("a", 29): nil}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "seed.iso")
			if err := WriteISO(path, tt.files); err == nil {
				t.Fatal("WriteISO succeeded, want an error")
			}
			if names := dirEntries(t, dir); len(names) != 0 {
				t.Errorf("directory holds %q after error", names)
			}
		})
	}
}

func TestWriteISORenameFailureRemovesTemp(t *testing.T) {
	dir := t.TempDir()
	// A directory in the way makes the final rename fail after the
	// temporary image has been written.
	path := filepath.Join(dir, "seed.iso")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteISO(path, mustFiles(t, testSeed())); err == nil {
		t.Fatal("WriteISO succeeded, want an error")
	}
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"seed.iso"}) {
		t.Errorf("directory holds %q after error, want only seed.iso", names)
	}
}

func TestWriteISOMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "seed.iso")
	if err := WriteISO(path, map[string][]byte{"meta-data": nil}); err == nil {
		t.Fatal("WriteISO succeeded, want an error")
	}
}

// TestWriteISOIsoinfo cross-checks the image with isoinfo (genisoimage) when
// it is installed.
func TestWriteISOIsoinfo(t *testing.T) {
	isoinfo, err := exec.LookPath("isoinfo")
	if err != nil {
		t.Skip("isoinfo not installed")
	}
	files := mustFiles(t, testSeed())
	path := filepath.Join(t.TempDir(), "seed.iso")
	if err := WriteISO(path, files); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(isoinfo, "-d", "-i", path).Output()
	if err != nil {
		t.Fatalf("isoinfo -d: %v", err)
	}
	if !strings.Contains(string(out), "Volume id: cidata\n") {
		t.Errorf("isoinfo -d shows no volume id cidata:\n%s", out)
	}
	for name, want := range files {
		got, err := exec.Command(isoinfo, "-i", path, "-x", "/"+name+";1").Output()
		if err != nil {
			t.Fatalf("isoinfo -x %s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("isoinfo -x %s = %q, want %q", name, got, want)
		}
	}
}

func BenchmarkFilesAndWriteISO(b *testing.B) {
	s := testSeed()
	s.UserData = []byte("#cloud-config\nruncmd: [\"echo hi\"]\n")
	path := filepath.Join(b.TempDir(), "seed.iso")
	for b.Loop() {
		files, err := s.Files()
		if err != nil {
			b.Fatal(err)
		}
		if err := WriteISO(path, files); err != nil {
			b.Fatal(err)
		}
	}
}
