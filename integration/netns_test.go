package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Network namespaces for the networking tests. Every address a test talks
// to is inside a namespace it created, or loopback.

var nsSeq atomic.Int32

func needNetns(t *testing.T) {
	t.Helper()
	needRoot(t)
	_, err := exec.LookPath("ip")
	need(t, "ip (iproute2)", err == nil)
}

// netns is a network namespace that the test's cleanup deletes.
type netns struct {
	t    *testing.T
	Name string
}

// newNetns creates a namespace with loopback up (QEMU's port forwards and
// slirp's host side live on it).
func newNetns(t *testing.T, tag string) *netns {
	t.Helper()
	n := &netns{t: t, Name: fmt.Sprintf("vmr-%s-%d-%d", tag, os.Getpid(), nsSeq.Add(1))}
	mustRun(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
		}
	})
	n.IP("link", "set", "lo", "up")
	return n
}

func mustRun(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// IP runs `ip -n NS args…`.
func (n *netns) IP(args ...string) string {
	n.t.Helper()
	return mustRun(n.t, append([]string{"ip", "-n", n.Name}, args...)...)
}

// Wrapper is the argv prefix that runs a program inside the namespace.
func (n *netns) Wrapper() []string { return []string{"ip", "netns", "exec", n.Name} }

// Run runs argv inside the namespace and returns its standard output.
func (n *netns) Run(argv ...string) (string, error) {
	full := append(n.Wrapper(), argv...)
	out, err := exec.Command(full[0], full[1:]...).Output()
	if ee, ok := err.(*exec.ExitError); ok {
		err = fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, ee.Stderr)
	}
	return string(out), err
}

// Background runs a server inside the namespace until the test ends.
func (n *netns) Background(argv ...string) {
	n.t.Helper()
	full := append(n.Wrapper(), argv...)
	cmd := exec.Command(full[0], full[1:]...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	n.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if n.t.Failed() {
			n.t.Logf("%s in %s:\n%s", argv[0], n.Name, logs.String())
		}
	})
}

// Sysctl sets sysctls inside the namespace.
func (n *netns) Sysctl(settings ...string) {
	n.t.Helper()
	mustRun(n.t, append(append(n.Wrapper(), "sysctl", "-q", "-w"), settings...)...)
}

// nsLink is one interface as `ip -o link` shows it.
type nsLink struct {
	Index  int
	Name   string
	Parent string
	Line   string
}

var linkLine = regexp.MustCompile(`^(\d+): ([^:@\s]+)(?:@([^:\s]+))?:`)

// Links lists the namespace's interfaces with their details.
func (n *netns) Links() []nsLink {
	n.t.Helper()
	var out []nsLink
	for _, line := range strings.Split(n.IP("-o", "-d", "link"), "\n") {
		if m := linkLine.FindStringSubmatch(line); m != nil {
			var idx int
			fmt.Sscan(m[1], &idx)
			out = append(out, nsLink{Index: idx, Name: m[2], Parent: m[3], Line: line})
		}
	}
	return out
}

// vmLinks are the links vmrunner made: taps (vmt…) and macvtaps (vmv…).
func (n *netns) vmLinks() []nsLink {
	var out []nsLink
	for _, l := range n.Links() {
		if strings.HasPrefix(l.Name, "vmt") || strings.HasPrefix(l.Name, "vmv") {
			out = append(out, l)
		}
	}
	return out
}

// assertClean checks that nothing vmrunner made on the host remains:
// no tap or macvtap, no private device node.
func (n *netns) assertClean(devNodes ...string) {
	n.t.Helper()
	for _, l := range n.vmLinks() {
		n.t.Errorf("link left behind: %s", l.Line)
	}
	private, _ := filepath.Glob("/dev/vmrunner-*")
	for _, p := range append(private, devNodes...) {
		if _, err := os.Stat(p); err == nil {
			n.t.Errorf("device node left behind: %s", p)
		}
	}
}

// lan is a LAN segment in its own namespace with one host on it: PREFIX.1
// answers DHCP (dnsmasq, PREFIX.100-200) and HTTP on port 8000, where
// /blob holds blobMiB MiB.
type lan struct {
	ns   *netns
	Addr string
}

const lanHTTP = 8000

// newLAN makes the LAN and links it to peer by a veth whose end in peer is
// named ifname (up, no address).
func newLAN(t *testing.T, peer *netns, ifname, prefix string, mtu, blobMiB int) *lan {
	t.Helper()
	l := &lan{ns: newNetns(t, "lan"), Addr: prefix + ".1"}
	peer.IP("link", "add", ifname, "mtu", fmt.Sprint(mtu), "type", "veth", "peer", "name", "eth0", "mtu", fmt.Sprint(mtu), "netns", l.ns.Name)
	peer.IP("link", "set", ifname, "up")
	l.ns.IP("addr", "add", l.Addr+"/24", "dev", "eth0")
	l.ns.IP("link", "set", "eth0", "up")
	dir := t.TempDir()
	l.ns.Background("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface=eth0", "--bind-interfaces", "--user=root", "--log-facility=-", "--log-dhcp",
		"--dhcp-range="+prefix+".100,"+prefix+".200,255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "dnsmasq.pid"))
	serveBlob(t, l.ns, blobMiB)
	return l
}

// serveBlob serves /blob of blobMiB MiB on port 8000 (all addresses,
// IPv4 and IPv6) inside ns.
func serveBlob(t *testing.T, ns *netns, blobMiB int) {
	t.Helper()
	www := t.TempDir()
	f, err := os.Create(filepath.Join(www, "blob"))
	if err == nil {
		err = f.Truncate(int64(blobMiB) << 20)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	ns.Background("busybox", "httpd", "-f", "-p", fmt.Sprint(lanHTTP), "-h", www)
}

// Get fetches url from the LAN host, retrying until timeout, and returns
// the body and how long the successful fetch took.
func (l *lan) Get(url string, timeout time.Duration) (string, time.Duration) {
	l.ns.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		start := time.Now()
		out, err := l.ns.Run("timeout", "60", "busybox", "wget", "-q", "-O", "-", url)
		if err == nil {
			return out, time.Since(start)
		}
		if time.Now().After(deadline) {
			l.ns.t.Fatalf("GET %s from the LAN host: %v", url, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
