package controller

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/zap"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/vm"
)

// TestSetBootModeAArch64 refuses switching an aarch64 guest to legacy
// boot, which would start it without firmware and without a kernel.
func TestSetBootModeAArch64(t *testing.T) {
	plan := &vm.Plan{Arch: config.ArchAArch64, Config: &config.Config{BootMode: config.BootUEFI}}
	c := New(Options{Plan: plan, Prepared: &vm.Prepared{}, Log: zap.NewNop()})
	if err := c.SetBootMode(context.Background(), config.BootLegacy); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetBootMode(legacy) on aarch64 without KERNEL = %v, want ErrInvalid", err)
	}
}
