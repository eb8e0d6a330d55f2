package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/certs"
	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/redfish"
	"github.com/vmrunner/vmrunner/vm"
)

// serveRedfish puts the Redfish BMC on REDFISH_PORT when REDFISH_ENABLE=1
// and returns what closes it; the listener is bound before it returns, so
// a taken port fails the start instead of leaving a VM without its BMC.
func serveRedfish(plan *vm.Plan, ctl controller.API, log *zap.Logger) (stop func(), err error) {
	r := plan.Config.Redfish
	if !r.Enabled {
		return func() {}, nil
	}
	log = log.With(zap.String("service", "redfish"))
	cert, fingerprint, err := certs.Load(certs.Source{CertPath: r.TLSCert, KeyPath: r.TLSKey,
		Dir: plan.Paths.State, Names: []string{plan.Config.GuestName}})
	if err != nil {
		return nil, fmt.Errorf("redfish: %w", err)
	}
	l, err := net.Listen("tcp", r.Addr())
	if err != nil {
		return nil, fmt.Errorf("redfish: REDFISH_PORT %d: %w", r.Port, err)
	}
	h := redfish.New(ctl, redfish.Options{Username: r.Username, Password: r.Password,
		SystemID: r.SystemID, Version: version, Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := redfish.Serve(ctx, l, h, cert, log); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("redfish service ended", zap.Error(err))
		}
	}()
	log.Info("redfish listening", zap.String("url", "https://"+l.Addr().String()+"/redfish/v1/"),
		zap.String("system", r.SystemID), zap.String("user", r.Username), zap.String("sha256", fingerprint))
	return func() {
		cancel()
		<-done
	}, nil
}
