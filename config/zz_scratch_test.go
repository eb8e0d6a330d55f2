package config

import "testing"

func TestScratchBugs(t *testing.T) {
	for _, v := range []string{"NaNG", "nanM", "0.1K", "0.0001G", "1e-300T"} {
		c, err := Load(map[string]string{"DISK_SIZE": v}, testHost)
		if err == nil {
			t.Errorf("DISK_SIZE=%q accepted as %d", v, c.DiskSize)
		}
	}
	for _, v := range []string{"NaNG", "nanM"} {
		c, err := Load(map[string]string{"MEMORY": v}, testHost)
		t.Logf("MEMORY=%q: %v %v", v, c != nil, err)
	}
	h := testHost
	h.StateHome = "relative/state"
	c, err := Load(map[string]string{}, h)
	if err == nil {
		t.Errorf("relative XDG_STATE_HOME gave DATA_DIR %q", c.DataDir)
	}
	h = testHost
	h.CPUs = 384
	c, err = Load(map[string]string{"CPUS": "max"}, h)
	t.Logf("CPUS=max on 384: %v", err)
	args, err := SplitArgs("a\xffb")
	t.Logf("%q %v", args, err)
	args, err = SplitArgs(`"C:\dir"`)
	t.Logf("%q %v", args, err)
}
