package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/ipmi"
	"github.com/vmrunner/vmrunner/vm"
)

// serveIPMI puts the IPMI BMC on IPMI_PORT (UDP) when IPMI_ENABLE=1 and
// returns what closes it; the socket is bound before it returns, so a
// taken port (or one below 1024 without the capability) fails the start
// instead of leaving a VM without its BMC.
func serveIPMI(plan *vm.Plan, ctl controller.API, log *zap.Logger) (stop func(), err error) {
	c := plan.Config.IPMI
	if !c.Enabled {
		return func() {}, nil
	}
	log = log.With(zap.String("service", "ipmi"))
	addr, err := net.ResolveUDPAddr("udp", c.Addr())
	if err != nil {
		return nil, fmt.Errorf("ipmi: IPMI_LISTEN %q: %w", c.Listen, err)
	}
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("ipmi: IPMI_PORT %d: %w", c.Port, err)
	}
	srv := ipmi.New(ctl, ipmi.Options{Username: c.Username, Password: c.Password,
		SystemID: c.SystemID, Version: version, Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, conn); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("ipmi service ended", zap.Error(err))
		}
	}()
	log.Warn("ipmi listening: IPMI 2.0 logins expose a hash of the password to anyone who knows the user name; prefer Redfish, keep the port on a management network",
		zap.String("addr", "udp "+conn.LocalAddr().String()), zap.String("system", c.SystemID), zap.String("user", c.Username))
	return func() {
		cancel()
		<-done
	}, nil
}
