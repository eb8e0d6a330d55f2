package redfish

import (
	"crypto/tls"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func tlsClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 32,
			// As a client pool does; 200 handshakes at once on a loaded 2-core
			// machine under -race can outlast the server's header timeout.
			MaxConnsPerHost: 32},
		Timeout: 30 * time.Second,
	}
}

func request(c *http.Client, method, url, body string, a auth) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	a(req)
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// TestHostileOverTLS tries what a hostile or broken client sends, over the
// real HTTPS server: the service answers each with a clear error, keeps
// the VM's state consistent, and keeps serving.
func TestHostileOverTLS(t *testing.T) {
	ts := newTestService(t)
	base := "https://" + serveTLS(t, ts)
	c := tlsClient()
	reset := base + sysPath + "/Actions/ComputerSystem.Reset"

	tests := []struct {
		name, method, url, body string
		a                       auth
		want                    int
		mentions                string
	}{
		{"no auth", "GET", base + sysPath, "", noAuth, 401, "NoValidSession"},
		{"wrong password", "GET", base + sysPath, "", basic(testUser, "password"), 401, "NoValidSession"},
		{"expired or made-up token", "GET", base + sysPath, "", token(strings.Repeat("a", 64)), 401, "NoValidSession"},
		{"deep nesting", "PATCH", base + sysPath, `{"Boot":` + strings.Repeat("[", 500000) + `}`, good, 400, "MalformedJSON"},
		{"unknown ResetType", "POST", reset, `{"ResetType":"SelfDestruct"}`, good, 400, "GracefulRestart"},
		{"file:// media", "POST", base + cdPath + "/Actions/VirtualMedia.InsertMedia", `{"Image":"file:///etc/shadow"}`, good, 400, "http"},
		{"path traversal", "GET", base + "/redfish/v1/Systems/../../../etc/passwd", "", good, 404, "ResourceMissingAtURI"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, err := request(c, tc.method, tc.url, tc.body, tc.a)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.want || !strings.Contains(body, tc.mentions) {
				t.Errorf("%d %s, want %d mentioning %q", code, clip(body), tc.want, tc.mentions)
			}
		})
	}

	// A 10 MB body: refused with 413, or the connection is closed while
	// the client still sends; either way nothing is parsed and the
	// service goes on.
	code, body, err := request(c, "POST", reset, `{"ResetType":"`+strings.Repeat("x", 10<<20)+`"}`, good)
	if err == nil && (code != 413 || !strings.Contains(body, "larger than")) {
		t.Errorf("10 MB body: %d %s", code, clip(body))
	}
	t.Logf("10 MB body: status %d, client error %v", code, err)

	// 200 concurrent requests while power cycling.
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[int]int{}
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var code int
			var err error
			switch i % 5 {
			case 0:
				code, _, err = request(c, "POST", reset, `{"ResetType":"PowerCycle"}`, good)
			case 1:
				code, _, err = request(c, "POST", reset, `{"ResetType":"ForceOff"}`, good)
			case 2:
				code, _, err = request(c, "PATCH", base+sysPath, `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}`, good)
			default:
				code, _, err = request(c, "GET", base+sysPath, "", good)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			counts[code]++
		}()
	}
	wg.Wait()
	t.Logf("200 concurrent requests: statuses %v", counts)
	for code := range counts {
		if !slices.Contains([]int{200, 204, 409}, code) {
			t.Errorf("status %d under load", code)
		}
	}
	if code, _, err := request(c, "GET", base+sysPath, "", good); err != nil || code != 200 {
		t.Errorf("after the hostile requests: %d %v", code, err)
	}
}

// BenchmarkGetSystemTLS measures GET System over HTTPS with keep-alive
// against the fake, and reports the median: go test -run X -bench
// GetSystemTLS -benchtime 200x ./redfish/
func BenchmarkGetSystemTLS(b *testing.B) {
	ts := newTestService(b)
	base := "https://" + serveTLS(b, ts)
	c := tlsClient()
	request(c, "GET", base+sysPath, "", good) // the TLS handshake
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		code, _, err := request(c, "GET", base+sysPath, "", good)
		lat = append(lat, time.Since(start))
		if err != nil || code != 200 {
			b.Fatalf("%d %v", code, err)
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "median-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
