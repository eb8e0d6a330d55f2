package config

import (
	"strings"
	"testing"
)

func TestLoadIPMI(t *testing.T) {
	const pw = "s3cret-IPMI-pass"
	c := mustLoad(t, map[string]string{})
	if c.IPMI.Enabled || c.KeepAlive {
		t.Errorf("IPMI on by default: %+v (keep alive %v)", c.IPMI, c.KeepAlive)
	}
	c = mustLoad(t, map[string]string{"IPMI_ENABLE": "1", "IPMI_PASSWORD": pw})
	want := IPMI{Enabled: true, Port: 623, Username: "admin", Password: pw, SystemID: "testhost"}
	if c.IPMI != want {
		t.Errorf("defaults: %+v, want %+v", c.IPMI, want)
	}
	if got := c.IPMI.Addr(); got != ":623" {
		t.Errorf("Addr() = %q, want :623 (every address, for docker -p)", got)
	}
	if !c.KeepAlive {
		t.Error("KEEP_ALIVE_AFTER_VM_STOP is not on with IPMI: powering the VM off would end its BMC")
	}
	if c = mustLoad(t, map[string]string{"IPMI_ENABLE": "1", "IPMI_PASSWORD": pw, "KEEP_ALIVE_AFTER_VM_STOP": "0"}); c.KeepAlive {
		t.Error("an explicit KEEP_ALIVE_AFTER_VM_STOP=0 was overridden")
	}
	c = mustLoad(t, map[string]string{"IPMI_ENABLE": "yes", "IPMI_PASSWORD": "x^7" + strings.Repeat("A", 17), "IPMI_PORT": "6230",
		"IPMI_LISTEN": "127.0.0.1", "IPMI_USERNAME": "ironic-conductor", "IPMI_SYSTEM_ID": "node-1", "GUEST_NAME": "vm1"})
	want = IPMI{Enabled: true, Listen: "127.0.0.1", Port: 6230, Username: "ironic-conductor", Password: "x^7" + strings.Repeat("A", 17), SystemID: "node-1"}
	if c.IPMI != want {
		t.Errorf("set: %+v, want %+v", c.IPMI, want)
	}
	for _, kv := range c.Effective() {
		if strings.Contains(kv[1], "AAAAA") {
			t.Errorf("--show-config shows the IPMI password in %s", kv[0])
		}
	}
	// Off, nothing else is checked.
	mustLoad(t, map[string]string{"IPMI_ENABLE": "0", "IPMI_PORT": "x", "IPMI_PASSWORD": "password"})
	// Beside Redfish, on another password and a UDP port of its own.
	mustLoad(t, map[string]string{"IPMI_ENABLE": "1", "IPMI_PASSWORD": pw, "REDFISH_ENABLE": "1", "REDFISH_PASSWORD": "other-Redfish-pw", "PORT_FWD": "623:623"})
}

func TestLoadIPMIBad(t *testing.T) {
	on := func(kv ...string) map[string]string {
		m := map[string]string{"IPMI_ENABLE": "1", "IPMI_PASSWORD": "s3cret-IPMI-pass"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		env              map[string]string
		name, value, acc string
	}{
		{map[string]string{"IPMI_ENABLE": "maybe"}, "IPMI_ENABLE", "maybe", "yes/no"},
		{map[string]string{"IPMI_ENABLE": "1"}, "IPMI_PASSWORD", "", "required with IPMI_ENABLE=1"},
		{on("IPMI_PASSWORD", "password"), "IPMI_PASSWORD", Masked, "default 'password' is refused"},
		{on("IPMI_PASSWORD", "s3cret-Redf"), "IPMI_PASSWORD", Masked, "12-20"},
		{on("IPMI_PASSWORD", "s3cret-IPMI-pass-too-long"), "IPMI_PASSWORD", Masked, "20 is IPMI's limit"},
		{on("IPMI_PASSWORD", "s3cret-IPMI-päss"), "IPMI_PASSWORD", Masked, "printable ASCII"},
		{on("REDFISH_ENABLE", "1", "REDFISH_PASSWORD", "s3cret-IPMI-pass"), "IPMI_PASSWORD", Masked, "other than REDFISH_PASSWORD"},
		{on("IPMI_PORT", "0"), "IPMI_PORT", "0", "1 to 65535"},
		{on("IPMI_LISTEN", "localhost"), "IPMI_LISTEN", "localhost", "IP address"},
		{on("IPMI_USERNAME", "ad\tmin"), "IPMI_USERNAME", "ad\tmin", "printable ASCII"},
		{on("IPMI_USERNAME", strings.Repeat("u", 17)), "IPMI_USERNAME", strings.Repeat("u", 17), "1-16"},
		{on("IPMI_SYSTEM_ID", "a/b"), "IPMI_SYSTEM_ID", "a/b", "letters, digits"},
		{on("PORT_FWD", "623:623/udp"), "PORT_FWD", "623:623/udp", "IPMI_PORT"},
	}
	for _, tc := range tests {
		t.Run(envName(tc.env), func(t *testing.T) {
			e := wantError(t, tc.env, tc.name, tc.value, tc.acc)
			if strings.Contains(e.Error(), "s3cret") {
				t.Errorf("the error shows the password: %v", e)
			}
		})
	}
}
