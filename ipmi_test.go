package main

import (
	"net"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/vm"
)

// The socket is bound before serveIPMI returns: a taken port is an error
// naming IPMI_PORT, so the start fails instead of running without a BMC.
func TestServeIPMIBindsFirst(t *testing.T) {
	taken, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.LocalAddr().(*net.UDPAddr).Port
	plan := &vm.Plan{Config: &config.Config{IPMI: config.IPMI{Enabled: true, Listen: "127.0.0.1", Port: port,
		Username: "admin", Password: "a-long-ipmi-pass", SystemID: "vm1"}}}
	if _, err := serveIPMI(plan, nil, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "IPMI_PORT") {
		t.Errorf("a taken port: %v, want an error naming IPMI_PORT", err)
	}
	taken.Close()
	stop, err := serveIPMI(plan, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	// Bound: the port is now ours.
	if c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err == nil {
		c.Close()
		t.Error("the port is free while the BMC serves")
	}
	stop()
	if c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		t.Errorf("the port is still taken after stop: %v", err)
	} else {
		c.Close()
	}
	plan.Config.IPMI.Enabled = false
	if stop, err := serveIPMI(plan, nil, zap.NewNop()); err != nil {
		t.Errorf("off: %v", err)
	} else {
		stop()
	}
}
