package netcfg

import "testing"

func TestUplinkMTU(t *testing.T) {
	tests := []struct {
		name        string
		bridge      bool
		want        int
		uplink      int
		guest, link int
		clamped     bool
	}{
		{"bridge, nothing chosen", true, 0, 1500, 0, 1500, false},
		{"bridge, jumbo bridge keeps its MTU", true, 0, 9000, 0, 9000, false},
		{"bridge, detected jumbo fits", true, 9000, 9000, 9000, 9000, false},
		{"bridge, too large is clamped", true, 9000, 1500, 1500, 1500, true},
		{"bridge, smaller guest leaves the tap at the bridge's", true, 1400, 1500, 1400, 1500, false},
		{"bridge, small bridge clamps the default 1500", true, 0, 1400, 1400, 1400, true},
		{"bridge, unknown uplink", true, 9000, 0, 9000, 0, false},
		{"direct, nothing chosen", false, 0, 1500, 0, 0, false},
		{"direct, jumbo parent", false, 9000, 9000, 9000, 9000, false},
		{"direct, smaller guest shrinks the macvtap", false, 1400, 9000, 1400, 1400, false},
		{"direct, too large is clamped", false, 9000, 1500, 1500, 1500, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			guest, link, clamped := UplinkMTU(tt.bridge, tt.want, tt.uplink)
			if guest != tt.guest || link != tt.link || clamped != tt.clamped {
				t.Errorf("UplinkMTU(%v, %d, %d) = %d, %d, %v; want %d, %d, %v",
					tt.bridge, tt.want, tt.uplink, guest, link, clamped, tt.guest, tt.link, tt.clamped)
			}
		})
	}
}
