package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestReadNumbered pins the one rule set of the three numbered families:
// which instances exist, their defaults, and every refused name.
func TestReadNumbered(t *testing.T) {
	show := func(v any, err error) string {
		var msgs []string
		for _, e := range flatten(err) {
			var ce *Error
			if errors.As(e, &ce) {
				msgs = append(msgs, ce.Var+": "+ce.Accepted)
			} else {
				msgs = append(msgs, e.Error())
			}
		}
		return fmt.Sprintf("%+v %q", v, msgs)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		read func(map[string]string) string
		want string
	}{
		{"NIC 1 always, with defaults", map[string]string{},
			func(e map[string]string) string { return show(readNumbered[rawNIC](e, nicFamily)) },
			`[{N:1 Raw:{Mode:nat Bridge:br0 DirectDev:eth0 Model:virtio MAC: MTU: GuestIP: GuestIP6: Boot:0 ContIf: ContBr:}}] []`},
		{"an empty MODE is set: its default applies", map[string]string{"NETWORK3_MODE": "", "NETWORK3_MTU": "9000"},
			func(e map[string]string) string { return show(readNumbered[rawNIC](e, nicFamily)) },
			`[{N:1 Raw:{Mode:nat Bridge:br0 DirectDev:eth0 Model:virtio MAC: MTU: GuestIP: GuestIP6: Boot:0 ContIf: ContBr:}} {N:3 Raw:{Mode:nat Bridge:br0 DirectDev:eth0 Model:virtio MAC: MTU:9000 GuestIP: GuestIP6: Boot:0 ContIf: ContBr:}}] []`},
		{"refused NIC names", map[string]string{"NETWORK1_MODE": "nat", "NETWORK9_MODE": "nat", "NETWORK02_MODE": "nat", "NETWORK4_MAC": "x"},
			func(e map[string]string) string { return show(readNumbered[rawNIC](e, nicFamily)) },
			`[{N:1 Raw:{Mode:nat Bridge:br0 DirectDev:eth0 Model:virtio MAC: MTU: GuestIP: GuestIP6: Boot:0 ContIf: ContBr:}}] ["NETWORK02_MODE: NETWORK_* for NIC 1 and NETWORK2_* to NETWORK8_* for NICs 2 to 8" ` +
				`"NETWORK1_MODE: NETWORK_* for NIC 1 and NETWORK2_* to NETWORK8_* for NICs 2 to 8" "NETWORK4_MAC: only together with NETWORK4_MODE (nat, bridge, direct, container or none)" ` +
				`"NETWORK9_MODE: NETWORK_* for NIC 1 and NETWORK2_* to NETWORK8_* for NICs 2 to 8"]`},
		{"no share without SOURCE", map[string]string{"FILESYSTEM_TARGET": "/x", "FILESYSTEM2_SOURCE": "/srv"},
			func(e map[string]string) string { return show(readNumbered[rawShare](e, shareFamily)) },
			`[{N:2 Raw:{Source:/srv Target: Driver: AccessMode: ReadOnly:0}}] ["FILESYSTEM_TARGET: only together with FILESYSTEM_SOURCE (the host folder to share)"]`},
		{"refused share names", map[string]string{"FILESYSTEM0_SOURCE": "/a", "FILESYSTEM9_SOURCE": "/b"},
			func(e map[string]string) string { return show(readNumbered[rawShare](e, shareFamily)) },
			`[] ["FILESYSTEM0_SOURCE: FILESYSTEM_* for share 1 and FILESYSTEM2_* to FILESYSTEM8_* for shares 2 to 8" ` +
				`"FILESYSTEM9_SOURCE: FILESYSTEM_* for share 1 and FILESYSTEM2_* to FILESYSTEM8_* for shares 2 to 8"]`},
		{"disks by any of their variables; DISK_SIZE and DEVICE are not in the family", map[string]string{"DISK_SIZE": "1G", "DEVICE": "/d", "DISK3_SIZE": "1G", "DEVICE5": "/e"},
			func(e map[string]string) string { return show(readNumbered[rawDisk](e, diskFamily)) },
			`[{N:3 Raw:{Size:1G Device:}} {N:5 Raw:{Size: Device:/e}}] []`},
		{"refused disk names", map[string]string{"DISK1_SIZE": "1G", "DEVICE7": "/d", "DISK03_SIZE": "1G", "DISK2_SIZEX": "1G"},
			func(e map[string]string) string { return show(readNumbered[rawDisk](e, diskFamily)) },
			`[] ["DEVICE7: DEVICE2 to DEVICE6 for disks 2 to 6" "DISK03_SIZE: DISK2_SIZE to DISK6_SIZE for disks 2 to 6" "DISK1_SIZE: DISK2_SIZE to DISK6_SIZE for disks 2 to 6"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.read(tc.env); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestShareSourceSetButEmpty(t *testing.T) {
	ce := wantError(t, map[string]string{"FILESYSTEM_SOURCE": ""}, "FILESYSTEM_SOURCE", "", "an existing host folder")
	if !strings.Contains(ce.Error(), "is empty") {
		t.Errorf("error %q does not say the value is empty", ce)
	}
}
