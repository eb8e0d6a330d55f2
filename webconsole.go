package main

import (
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/controller"
	"github.com/vmrunner/vmrunner/vm"
	"github.com/vmrunner/vmrunner/webconsole"
)

// startDisplay tells the user a VNC password made just now (the one time
// it is shown; it stays in the state folder's vnc-password) and, for
// GRAPHICS=novnc, starts the web console in front of ctl's display. The
// returned func closes the console; a console that cannot start is
// logged and the VM runs without it, as it would without a viewer.
func startDisplay(plan *vm.Plan, prep *vm.Prepared, ctl *controller.Controller, log *zap.Logger) (stop func()) {
	cfg := plan.Config
	if prep.VNCPasswordNew {
		log.Info("VNC password generated; it is kept in the state folder and shown only now (change it with vmrunner vnc-password)",
			zap.String("vnc_password", prep.VNCPassword), zap.String("file", plan.Paths.VNCPassword))
	}
	if cfg.Console.Graphics != config.GraphicsNoVNC {
		return func() {}
	}
	wcfg, fingerprint, err := webconsole.FromConfig(cfg, prep.VNCPassword, ctl, log.Named("webconsole"))
	if err != nil {
		log.Error("web console not started", zap.Error(err))
		return func() {}
	}
	srv, err := webconsole.Listen(wcfg)
	if err != nil {
		log.Error("web console not started", zap.Error(err))
		return func() {}
	}
	if cfg.Console.NoVNC.Password == "" {
		// Its password is the VNC one, a live change included.
		ctl.FollowDisplayPassword(srv.SetPassword)
	}
	go func() {
		if err := srv.Serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("web console stopped", zap.Error(err))
		}
	}()
	log.Info("web console listening (HTTPS, basic auth)", zap.String("addr", srv.Addr().String()),
		zap.String("user", wcfg.Username), zap.String("certificate_sha256", fingerprint))
	return func() {
		if err := srv.Close(); err != nil {
			log.Warn("closing the web console", zap.Error(err))
		}
	}
}
