package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestShares(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		name string
		env  map[string]string
		want []Share
	}{
		{"none", map[string]string{}, nil},
		{"defaults", map[string]string{"FILESYSTEM_SOURCE": dir},
			[]Share{{Index: 1, Source: dir, Target: "/mnt/share", Driver: ShareVirtiofs, AccessMode: AccessPassthrough}}},
		{"9p read-only mapped, and share 3", map[string]string{
			"FILESYSTEM_SOURCE": dir, "FILESYSTEM_TARGET": "/srv/data", "FILESYSTEM_DRIVER": "9P",
			"FILESYSTEM_ACCESSMODE": "Mapped", "FILESYSTEM_READONLY": "1",
			"FILESYSTEM3_SOURCE": other},
			[]Share{
				{Index: 1, Source: dir, Target: "/srv/data", Driver: Share9p, DriverSet: true, AccessMode: AccessMapped, ReadOnly: true},
				{Index: 3, Source: other, Target: "/mnt/share3", Driver: ShareVirtiofs, AccessMode: AccessPassthrough},
			}},
		{"virtiofs read-only", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_READONLY": "yes"},
			[]Share{{Index: 1, Source: dir, Target: "/mnt/share", Driver: ShareVirtiofs, AccessMode: AccessPassthrough, ReadOnly: true}}},
		{"the seed project's bare name is the tag, on /mnt/NAME", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_TARGET": "data"},
			[]Share{{Index: 1, Source: dir, Target: "/mnt/data", Name: "data", Driver: ShareVirtiofs, AccessMode: AccessPassthrough}}},
		{"default driver falls back to 9p for squash", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_ACCESSMODE": "squash"},
			[]Share{{Index: 1, Source: dir, Target: "/mnt/share", Driver: Share9p, AccessMode: AccessSquash}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustLoad(t, tt.env).Shares; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Shares\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSharesRejected(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		name     string
		env      map[string]string
		variable string
		accepted string
	}{
		{"missing folder", map[string]string{"FILESYSTEM_SOURCE": dir + "/nope"}, "FILESYSTEM_SOURCE", "an existing host folder"},
		{"a file", map[string]string{"FILESYSTEM_SOURCE": file}, "FILESYSTEM_SOURCE", "an existing host folder"},
		{"target without source", map[string]string{"FILESYSTEM2_TARGET": "/x"}, "FILESYSTEM2_TARGET", "only together with FILESYSTEM2_SOURCE"},
		{"share 9", map[string]string{"FILESYSTEM9_SOURCE": dir}, "FILESYSTEM9_SOURCE", "FILESYSTEM2_* to FILESYSTEM8_*"},
		{"share 1 numbered", map[string]string{"FILESYSTEM1_SOURCE": dir}, "FILESYSTEM1_SOURCE", "FILESYSTEM_* for share 1"},
		{"relative path target", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_TARGET": "mnt/x"}, "FILESYSTEM_TARGET", "absolute guest path, or a name"},
		{"name with a shell", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_TARGET": "$(reboot)"}, "FILESYSTEM_TARGET", "absolute guest path, or a name"},
		{"same name twice", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_TARGET": "data", "FILESYSTEM2_SOURCE": dir, "FILESYSTEM2_TARGET": "data"}, "FILESYSTEM2_TARGET", "FILESYSTEM_TARGET has it"},
		{"dotdot target", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_TARGET": "/mnt/../etc"}, "FILESYSTEM_TARGET", "no .."},
		{"space in target", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_TARGET": "/mnt/a b"}, "FILESYSTEM_TARGET", "absolute guest path"},
		{"shell in target", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_TARGET": "/mnt/$(reboot)"}, "FILESYSTEM_TARGET", "absolute guest path"},
		{"root target", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_TARGET": "/"}, "FILESYSTEM_TARGET", "absolute guest path"},
		{"same target", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM2_SOURCE": dir, "FILESYSTEM2_TARGET": "/mnt/share"}, "FILESYSTEM2_TARGET", "FILESYSTEM_TARGET has it"},
		{"driver", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_DRIVER": "nfs"}, "FILESYSTEM_DRIVER", "virtiofs or 9p"},
		{"access mode", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_ACCESSMODE": "root"}, "FILESYSTEM_ACCESSMODE", "passthrough, mapped or squash"},
		{"readonly", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_READONLY": "maybe"}, "FILESYSTEM_READONLY", ""},
		{"virtiofs mapped", map[string]string{"FILESYSTEM_SOURCE": dir, "FILESYSTEM_DRIVER": "virtiofs", "FILESYSTEM_ACCESSMODE": "mapped"}, "FILESYSTEM_DRIVER", "9p with FILESYSTEM_ACCESSMODE=mapped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.env)
			errs := configErrors(err)
			if len(errs) != 1 || errs[0].Var != tt.variable || !strings.Contains(errs[0].Error(), tt.accepted) {
				t.Errorf("errors %v, want one on %s accepting %q", err, tt.variable, tt.accepted)
			}
		})
	}
}
