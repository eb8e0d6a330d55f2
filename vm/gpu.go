package vm

import (
	"os"
	"path/filepath"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/qemu"
)

// FindRenderNodes lists the host's render nodes that this process may
// open read-write, as QEMU will (Facts.RenderNodes). A container sees
// only those passed in (docker run --device /dev/dri/renderD128).
func FindRenderNodes() []string {
	nodes, _ := filepath.Glob("/dev/dri/renderD*")
	var out []string
	for _, n := range nodes {
		if f, err := os.OpenFile(n, os.O_RDWR, 0); err == nil {
			f.Close()
			out = append(out, n)
		}
	}
	return out
}

// qemuModuleDir is where Debian's QEMU loads its modules from.
const qemuModuleDir = "/usr/lib/x86_64-linux-gnu/qemu"

// VirglModuleMissing says the host's QEMU is Debian's modular build
// without the GL half of virtio-vga-gl (hw-display-virtio-gpu-gl, which
// Debian 12 ships in qemu-system-gui): QEMU would list the device and
// then fail to create it. (Facts.VirglMissing.)
func VirglModuleMissing() bool {
	_, vga := os.Stat(filepath.Join(qemuModuleDir, "hw-display-virtio-vga-gl.so"))
	_, gl := os.Stat(filepath.Join(qemuModuleDir, "hw-display-virtio-gpu-gl.so"))
	return vga == nil && gl != nil
}

// planGPU gives GPU=intel its render node: GPU_RENDER_NODE (checked by
// config), else the first one found; without one it is refused, before
// anything is made.
func (p *Plan) planGPU(s *qemu.Spec, f Facts) error {
	h := p.Config.Hardware
	if h.GPU == "" {
		return nil
	}
	if f.VirglMissing {
		return &config.Error{Var: "GPU", Value: h.GPU,
			Accepted: "off on this host: its QEMU lacks the virtio-gpu-gl device; apt-get install qemu-system-gui (Debian keeps the module there)"}
	}
	node := h.RenderNode
	if node == "" {
		if len(f.RenderNodes) == 0 {
			return &config.Error{Var: "GPU", Value: h.GPU,
				Accepted: "off on this host: no render node (/dev/dri/renderD*) opens read-write; give the container one " +
					"(docker run --device /dev/dri/renderD128 --group-add $(stat -c %g /dev/dri/renderD128)) or name it with GPU_RENDER_NODE"}
		}
		node = f.RenderNodes[0]
	}
	s.GPU = &qemu.GPU{RenderNode: node}
	return nil
}
