// Package validate checks the Kubernetes manifests in deploy/kubernetes
// against the Kubernetes API types (strict decoding: an unknown or
// misspelt field fails) and against vmrunner's own contract. It is its own
// Go module so that k8s.io/api stays out of vmrunner's dependencies:
//
//	cd deploy/kubernetes/validate && go test ./...
package validate

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

const manifestDir = ".."

// Defaults of the contract (shared/spec/interface.md) that the checks
// fall back to when a manifest does not set the variable.
const (
	defaultShutdownTimeout = 30
	defaultSSHPort         = 2222
	// forcedStopSeconds is what vmrunner needs after SHUTDOWN_TIMEOUT to
	// stop QEMU by force (QMP quit, then SIGKILL after 3 s).
	forcedStopSeconds = 3
)

var healthCommand = []string{"vmrunner", "health"}

type document struct {
	file string
	kind string
	raw  []byte
}

func loadDocuments(t *testing.T) []document {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no manifests in %s", manifestDir)
	}
	var docs []document
	sep := regexp.MustCompile(`(?m)^---\s*$`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, part := range sep.Split(string(b), -1) {
			if strings.TrimSpace(stripComments(part)) == "" {
				continue
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(part), &meta); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			docs = append(docs, document{file: fmt.Sprintf("%s#%d", filepath.Base(f), i+1), kind: meta.APIVersion + "/" + meta.Kind, raw: []byte(part)})
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// decodeStrict fails on fields the API type does not have and on
// duplicate keys.
func decodeStrict(t *testing.T, d document, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(d.raw, into); err != nil {
		t.Fatalf("%s (%s): %v", d.file, d.kind, err)
	}
}

type manifests struct {
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
}

func load(t *testing.T) manifests {
	t.Helper()
	var m manifests
	for _, d := range loadDocuments(t) {
		switch d.kind {
		case "apps/v1/StatefulSet":
			var s appsv1.StatefulSet
			decodeStrict(t, d, &s)
			m.statefulSets = append(m.statefulSets, &s)
		case "v1/Service":
			var s corev1.Service
			decodeStrict(t, d, &s)
			m.services = append(m.services, &s)
		default:
			t.Fatalf("%s: unexpected kind %q (add it to this test)", d.file, d.kind)
		}
	}
	if len(m.statefulSets) != 1 {
		t.Fatalf("%d StatefulSets, want 1", len(m.statefulSets))
	}
	return m
}

func TestStrictDecoding(t *testing.T) {
	m := load(t)
	t.Logf("%d StatefulSet(s), %d Service(s)", len(m.statefulSets), len(m.services))
}

// TestStrictDecodingCatchesTypos makes sure the strictness is real.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	bad := []byte("apiVersion: apps/v1\nkind: StatefulSet\nspec:\n  template:\n    spec:\n      terminationGracePeriod: 45\n")
	var s appsv1.StatefulSet
	if err := yaml.UnmarshalStrict(bad, &s); err == nil {
		t.Fatal("a misspelt field decoded without error")
	}
}

func vmContainer(t *testing.T, s *appsv1.StatefulSet) *corev1.Container {
	t.Helper()
	for i := range s.Spec.Template.Spec.Containers {
		c := &s.Spec.Template.Spec.Containers[i]
		if c.Name == "vmrunner" {
			return c
		}
	}
	t.Fatalf("StatefulSet %s has no container named vmrunner", s.Name)
	return nil
}

func envInt(t *testing.T, c *corev1.Container, name string, def int) int {
	t.Helper()
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		if e.ValueFrom != nil {
			t.Fatalf("%s comes from %v: the checks need a literal value", name, e.ValueFrom)
		}
		n, err := strconv.Atoi(e.Value)
		if err != nil {
			t.Fatalf("%s=%q is not a number", name, e.Value)
		}
		return n
	}
	return def
}

func TestGracePeriodCoversShutdownTimeout(t *testing.T) {
	s := load(t).statefulSets[0]
	c := vmContainer(t, s)
	timeout := envInt(t, c, "SHUTDOWN_TIMEOUT", defaultShutdownTimeout)
	grace := s.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil {
		t.Fatalf("terminationGracePeriodSeconds unset: Kubernetes' default 30 s is not more than SHUTDOWN_TIMEOUT=%d", timeout)
	}
	if *grace <= int64(timeout+forcedStopSeconds) {
		t.Errorf("terminationGracePeriodSeconds=%d must be more than SHUTDOWN_TIMEOUT=%d plus %d s for a forced stop",
			*grace, timeout, forcedStopSeconds)
	}
}

func TestProbesRunVmrunnerHealth(t *testing.T) {
	c := vmContainer(t, load(t).statefulSets[0])
	probes := map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe}
	for name, p := range probes {
		if p == nil {
			if name != "startupProbe" {
				t.Errorf("%s missing", name)
			}
			continue
		}
		if p.Exec == nil || !slices.Equal(p.Exec.Command, healthCommand) {
			t.Errorf("%s does not run %q: %+v", name, healthCommand, p.ProbeHandler)
		}
		// vmrunner health gives QMP 5 s: the probe must wait longer.
		if p.TimeoutSeconds != 0 && p.TimeoutSeconds <= 5 {
			t.Errorf("%s timeoutSeconds=%d: vmrunner health may take up to 5 s", name, p.TimeoutSeconds)
		}
	}
	if c.ReadinessProbe == nil && c.LivenessProbe == nil {
		t.Fatal("no probes")
	}
}

func TestDataVolumeAndKVM(t *testing.T) {
	s := load(t).statefulSets[0]
	c := vmContainer(t, s)
	dataDir := "/data" // the image's DATA_DIR
	for _, e := range c.Env {
		if e.Name == "DATA_DIR" {
			dataDir = e.Value
		}
	}
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == dataDir {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil {
		t.Fatalf("nothing mounted at DATA_DIR %s", dataDir)
	}
	claimed := false
	for _, pvc := range s.Spec.VolumeClaimTemplates {
		if pvc.Name == mount.Name {
			claimed = true
			if _, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
				t.Errorf("volume claim %s requests no storage", pvc.Name)
			}
		}
	}
	if !claimed {
		t.Errorf("%s is mounted from %q, not from a volumeClaimTemplate", dataDir, mount.Name)
	}
	kvm := corev1.ResourceName("devices.kubevirt.io/kvm")
	if q, ok := c.Resources.Limits[kvm]; !ok || q.Value() != 1 {
		t.Errorf("limits do not request one %s", kvm)
	}
	if sc := c.SecurityContext; sc == nil || sc.Privileged != nil && *sc.Privileged {
		t.Errorf("the nat VM must not need a privileged container")
	}
	// vmrunner stages the cloud-init seed in a temporary directory.
	if sc := c.SecurityContext; sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		tmp := false
		for _, m := range c.VolumeMounts {
			tmp = tmp || m.MountPath == "/tmp" && !m.ReadOnly
		}
		if !tmp {
			t.Errorf("read-only root file system without a writable /tmp: the cloud-init seed cannot be made")
		}
	}
}

func TestImageMatchesManifests(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(manifestDir, "..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ENV DATA_DIR=/data", `VOLUME ["/data"]`, `ENTRYPOINT ["vmrunner"]`, `CMD ["vmrunner", "health"]`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("Dockerfile lacks %s, which the manifests rely on", want)
		}
	}
}

func TestServicesReachSSH(t *testing.T) {
	m := load(t)
	s := m.statefulSets[0]
	c := vmContainer(t, s)
	ssh := envInt(t, c, "SSH_PORT", defaultSSHPort)
	var port *corev1.ContainerPort
	for i := range c.Ports {
		if c.Ports[i].ContainerPort == int32(ssh) {
			port = &c.Ports[i]
		}
	}
	if port == nil {
		t.Fatalf("no containerPort for SSH_PORT %d", ssh)
	}
	governing := false
	for _, svc := range m.services {
		if svc.Name == s.Spec.ServiceName {
			governing = true
			if svc.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("governing service %s is not headless", svc.Name)
			}
		}
		for k, v := range svc.Spec.Selector {
			if s.Spec.Template.Labels[k] != v {
				t.Errorf("service %s selects %s=%s, which the pods do not carry", svc.Name, k, v)
			}
		}
		for _, p := range svc.Spec.Ports {
			ok := p.TargetPort.Type == intstr.String && p.TargetPort.StrVal == port.Name ||
				p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal == port.ContainerPort
			if !ok {
				t.Errorf("service %s port %s targets %s, not the SSH port", svc.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	if !governing {
		t.Errorf("no Service %q, the StatefulSet's serviceName", s.Spec.ServiceName)
	}
}

// evaluateRestricted returns the rules of the Pod Security Standard
// "restricted" (at the newest version the library knows) that a pod
// breaks, as Kubernetes' own PodSecurity admission code evaluates them.
func evaluateRestricted(t *testing.T, spec *corev1.PodSpec, meta *metav1.ObjectMeta) []policy.CheckResult {
	t.Helper()
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lv := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
	var forbidden []policy.CheckResult
	for _, r := range eval.EvaluatePod(lv, meta, spec) {
		if !r.Allowed {
			forbidden = append(forbidden, r)
		}
	}
	return forbidden
}

// TestPodSecurityRestricted: the shipped pod (nat networking, /dev/kvm from
// a device plugin) meets every rule of "restricted".
func TestPodSecurityRestricted(t *testing.T) {
	s := load(t).statefulSets[0]
	for _, r := range evaluateRestricted(t, &s.Spec.Template.Spec, &s.Spec.Template.ObjectMeta) {
		t.Errorf("restricted forbids: %s (%s)", r.ForbiddenReason, r.ForbiddenDetail)
	}
	// The checks above, said once more in vmrunner's words.
	c := vmContainer(t, s)
	pod := s.Spec.Template.Spec.SecurityContext
	if pod == nil || pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot || pod.RunAsUser == nil || *pod.RunAsUser == 0 {
		t.Error("the pod does not run as a non-root user")
	}
	if pod == nil || pod.SeccompProfile == nil || pod.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("the pod's seccomp profile is not RuntimeDefault")
	}
	if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("the container allows privilege escalation")
	}
}

// TestPodSecurityRulesThatCannotHold: what the other ways of running
// vmrunner cost, rule by rule, as the evaluator sees it (docs/security.md
// has the same table):
//   - bridge and direct NICs need CAP_NET_ADMIN (capabilities) and the
//     host's network, where the bridge or NIC is (host namespaces);
//   - /dev/kvm from a hostPath volume instead of a device plugin breaks
//     "volume types" (and needs a privileged container to open the device,
//     as a hostPath does not pass the device cgroup);
//   - running as root (uid 0) breaks both non-root rules.
func TestPodSecurityRulesThatCannotHold(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*corev1.PodSpec, *corev1.Container)
		want   []string // ForbiddenReason of each rule broken
	}{
		{"bridge or direct networking", func(p *corev1.PodSpec, c *corev1.Container) {
			p.HostNetwork = true
			c.SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}, []string{"host namespaces", "unrestricted capabilities"}},
		{"/dev/kvm as a hostPath", func(p *corev1.PodSpec, c *corev1.Container) {
			p.Volumes = append(p.Volumes, corev1.Volume{Name: "kvm", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/dev/kvm"}}})
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "kvm", MountPath: "/dev/kvm"})
		}, []string{"restricted volume types"}},
		{"as root", func(p *corev1.PodSpec, c *corev1.Container) {
			root := int64(0)
			no := false
			p.SecurityContext.RunAsUser, p.SecurityContext.RunAsNonRoot = &root, &no
			c.SecurityContext.RunAsNonRoot = nil
		}, []string{"runAsNonRoot != true", "runAsUser=0"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t).statefulSets[0]
			spec := s.Spec.Template.Spec.DeepCopy()
			var c *corev1.Container
			for i := range spec.Containers {
				if spec.Containers[i].Name == "vmrunner" {
					c = &spec.Containers[i]
				}
			}
			tt.change(spec, c)
			var got []string
			for _, r := range evaluateRestricted(t, spec, &s.Spec.Template.ObjectMeta) {
				got = append(got, r.ForbiddenReason)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("restricted forbids %q, want %q", got, want)
			}
		})
	}
}

// TestNoSharedSecrets: the guest's password comes from a Secret the pod
// cannot start without, and the image is pinned to a version.
func TestNoSharedSecrets(t *testing.T) {
	c := vmContainer(t, load(t).statefulSets[0])
	found := false
	for _, e := range c.Env {
		if e.Name != "GUEST_PASSWORD" {
			continue
		}
		found = true
		ref := (*corev1.SecretKeySelector)(nil)
		if e.ValueFrom != nil {
			ref = e.ValueFrom.SecretKeyRef
		}
		if e.Value != "" || ref == nil || ref.Optional == nil || *ref.Optional {
			t.Errorf("GUEST_PASSWORD must come from a Secret that is not optional: %+v", e)
		}
	}
	if !found {
		t.Error("GUEST_PASSWORD is not set from a Secret")
	}
	_, tag, ok := strings.Cut(c.Image[strings.LastIndex(c.Image, "/")+1:], ":")
	if !ok || tag == "" || tag == "latest" {
		t.Errorf("image %q has no version tag (latest and none are refused)", c.Image)
	}
}
