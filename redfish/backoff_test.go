package redfish

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBackoff pins the spacing of a client's password checks: free
// failures, then turns spaced by a doubling delay up to the cap, a queue
// limit, and records cleared by success, by time, and per client.
func TestBackoff(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b := newBackoff(func() time.Time { return now })
	const bad, other = "192.0.2.7", "192.0.2.8"
	turn := func(c string) (time.Duration, bool) { return b.turn(c) }

	for i := range b.free {
		if w, ok := turn(bad); w != 0 || !ok {
			t.Fatalf("check %d: wait %s ok %v, want none", i+1, w, ok)
		}
		b.failed(bad)
	}
	// Sequential failures: each check waits the delay the one before left.
	wantWaits := []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 4 * time.Second}
	for i, want := range wantWaits {
		w, ok := turn(bad)
		if w != want || !ok {
			t.Fatalf("check %d past the free ones: wait %s ok %v, want %s", i+1, w, ok, want)
		}
		now = now.Add(w)
		b.failed(bad)
	}
	if w, ok := turn(other); w != 0 || !ok {
		t.Errorf("another client waits %s (ok %v)", w, ok)
	}
	b.succeeded(other)

	// Parallel checks queue behind each other, and past the queue limit
	// the client is refused without a turn.
	now = now.Add(time.Minute)
	var waits []time.Duration
	for {
		w, ok := turn(bad)
		if !ok {
			if w <= b.queue {
				t.Errorf("refused with a wait of %s, within the queue of %s", w, b.queue)
			}
			break
		}
		waits = append(waits, w)
	}
	if want := []time.Duration{0, 4 * time.Second, 8 * time.Second}; fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Errorf("parallel turns wait %v, want %v", waits, want)
	}

	// A success clears the record.
	b.succeeded(bad)
	if w, ok := turn(bad); w != 0 || !ok {
		t.Errorf("after a success: wait %s ok %v", w, ok)
	}
	// So does a quiet spell.
	for range b.free + 3 {
		b.failed(bad)
	}
	now = now.Add(b.forget + time.Second)
	if w, ok := turn(bad); w != 0 || !ok {
		t.Errorf("after %s without failure: wait %s ok %v", b.forget, w, ok)
	}
	if n := b.failed(bad); n != 1 {
		t.Errorf("failures counted after the quiet spell: %d, want 1", n)
	}

	// A client that never failed is not delayed, however many checks it
	// has under way (a pool of parallel clients using basic auth).
	for i := range 50 {
		if w, ok := turn("192.0.2.10"); w != 0 || !ok {
			t.Fatalf("parallel check %d of a client that never failed: wait %s ok %v", i+1, w, ok)
		}
	}
	b.succeeded("192.0.2.10")
	// Once it failed, its checks under way count as failures: a burst of
	// parallel guesses gets no more free ones than a sequence.
	turn("192.0.2.9")
	b.failed("192.0.2.9")
	var burst []time.Duration
	for range b.free + 2 {
		w, _ := turn("192.0.2.9")
		burst = append(burst, w)
	}
	if want := "[0s 0s 0s 0s 0s 250ms 750ms]"; fmt.Sprint(burst) != want {
		t.Errorf("a burst after a failure waits %v, want %s", burst, want)
	}
	// Checks abandoned while waiting (the client hung up) are not failures.
	for range burst {
		b.abandoned("192.0.2.9")
	}
	if w, ok := turn("192.0.2.9"); w != 0 || !ok {
		t.Errorf("after the burst was abandoned: wait %s ok %v", w, ok)
	}
	b.succeeded("192.0.2.9")

	// The record is bounded: the client quiet longest makes room.
	b.limit = 3
	for i := range 5 {
		now = now.Add(time.Second)
		c := fmt.Sprintf("198.51.100.%d", i)
		turn(c)
		b.failed(c)
	}
	if len(b.clients) != 3 || b.clients["198.51.100.4"] == nil || b.clients[bad] != nil {
		t.Errorf("clients kept at the limit: %v", b.clients)
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1:4711", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:4711", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"@", "@"}, // a unix socket or a test's made-up address
	}
	for _, tc := range tests {
		if got := clientKey(tc.in); got != tc.want {
			t.Errorf("clientKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestLoginBackoffHTTP: wrong passwords, by basic auth and by login, slow
// down the client that sends them and nobody else; its right password
// still works after its turn; a storm beyond the queue gets 503 with
// Retry-After; the log names the client but never what it tried.
func TestLoginBackoffHTTP(t *testing.T) {
	ts := newTestService(t)
	s := ts.h.(*service)
	var mu sync.Mutex
	slept := map[string][]time.Duration{}
	s.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		// The test's clock stands still; remember who would have waited.
		slept[fmt.Sprint(ctx.Value(clientCtx{}))] = append(slept[fmt.Sprint(ctx.Value(clientCtx{}))], d)
		return nil
	}
	do := func(remote, method, path, body string, a auth) *http.Response {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req = req.WithContext(context.WithValue(req.Context(), clientCtx{}, remote))
		req.RemoteAddr = remote + ":40000"
		a(req)
		rec := httptest.NewRecorder()
		ts.h.ServeHTTP(rec, req)
		return rec.Result()
	}
	const attacker, operator = "203.0.113.66", "198.51.100.10"
	guesses := []string{"password1!", "admin-admin", "calvin-7", "hunter2-x", "letmein-1", "vmrunner-0", "p4ssw0rd!"}
	for i, g := range guesses {
		var res *http.Response
		if i%2 == 0 {
			res = do(attacker, "GET", sysPath, "", basic(testUser, g))
		} else {
			res = do(attacker, "POST", "/redfish/v1/SessionService/Sessions", fmt.Sprintf(`{"UserName":%q,"Password":%q}`, testUser, g), noAuth)
		}
		if res.StatusCode != 401 {
			t.Fatalf("guess %d: %d, want 401", i+1, res.StatusCode)
		}
	}
	// The clock stood still, so the two checks past the free five waited
	// 0 and 250 ms: the second waited for the first's turn.
	if got := slept[attacker]; fmt.Sprint(got) != "[250ms]" {
		t.Errorf("the guesser waited %v, want [250ms]", got)
	}
	// Another client is not slowed down, by basic auth or by a login.
	if res := do(operator, "GET", sysPath, "", good); res.StatusCode != 200 {
		t.Errorf("operator: %d", res.StatusCode)
	}
	if res := do(operator, "POST", "/redfish/v1/SessionService/Sessions", fmt.Sprintf(`{"UserName":%q,"Password":%q}`, testUser, testPass), noAuth); res.StatusCode != 201 {
		t.Errorf("operator login: %d", res.StatusCode)
	}
	if got := slept[operator]; len(got) != 0 {
		t.Errorf("the operator waited %v", got)
	}
	// Guessing on, the waits grow until the next turn is beyond the
	// queue: then the guesser is refused before any password is looked at,
	// the right one included.
	var refused *http.Response
	for range 20 {
		if res := do(attacker, "GET", sysPath, "", basic(testUser, "still-guessing")); res.StatusCode == 503 {
			refused = res
			break
		}
	}
	if refused == nil {
		t.Fatal("20 wrong passwords in a row were all checked")
	}
	if refused.Header.Get("Retry-After") == "" || refused.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("503 headers %v, want Retry-After and no challenge", refused.Header)
	}
	if res := do(attacker, "GET", sysPath, "", good); res.StatusCode != 503 {
		t.Errorf("right password while refused: %d, want 503", res.StatusCode)
	}
	// After Retry-After the right password works, and clears the record.
	var after int
	fmt.Sscan(refused.Header.Get("Retry-After"), &after)
	ts.advance(time.Duration(after) * time.Second)
	if res := do(attacker, "GET", sysPath, "", good); res.StatusCode != 200 {
		t.Errorf("right password after Retry-After: %d", res.StatusCode)
	}
	n := len(slept[attacker])
	if res := do(attacker, "GET", sysPath, "", good); res.StatusCode != 200 || len(slept[attacker]) != n {
		t.Errorf("after a success the client still waits: %d, %v", res.StatusCode, slept[attacker][n:])
	}

	warned := 0
	for _, e := range ts.logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		for _, g := range append(guesses, testPass, "still-guessing") {
			if strings.Contains(line, g) {
				t.Errorf("a log line shows a password: %s", line)
			}
		}
		if strings.Contains(e.Message, "failed logins") {
			warned++
			if e.ContextMap()["client"] != attacker {
				t.Errorf("warning without the client: %s", line)
			}
		}
	}
	if warned != 2 {
		t.Errorf("%d warnings about failed logins, want 2 (at the fifth and the eighth)", warned)
	}
}

type clientCtx struct{}

// TestLoginBackoffTLS: over real HTTPS and the real clock, a guesser on
// 127.0.0.1 hammering with 16 connections gets its passwords checked no
// faster than the spacing allows, while an operator on 127.0.0.2 is never
// refused. The operator's latency during the storm is logged, not asserted.
func TestLoginBackoffTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for three seconds")
	}
	ts := &testService{vm: newFakeVM()}
	ts.h = New(ts.vm, Options{Username: testUser, Password: testPass, SystemID: "node1"})
	// A shorter queue than the real one keeps the test short.
	ts.h.(*service).fails.queue = 2 * time.Second
	addr := serveTLS(t, ts)
	url := "https://" + addr + sysPath
	operator := tlsClient()
	operator.Transport.(*http.Transport).DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext
	if code, _, err := request(operator, "GET", url, "", good); err != nil || code != 200 {
		t.Skipf("cannot reach the service from 127.0.0.2 (%d, %v)", code, err)
	}

	const storm = 3 * time.Second
	stop := time.Now().Add(storm)
	guesser := tlsClient()
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				code, _, err := request(guesser, "GET", url, "", basic(testUser, "guess-guess"))
				mu.Lock()
				if err != nil {
					t.Errorf("guesser: %v", err)
				}
				counts[code]++
				mu.Unlock()
			}
		}()
	}
	var lat []time.Duration
	for time.Now().Before(stop) {
		start := time.Now()
		code, body, err := request(operator, "GET", url, "", good)
		lat = append(lat, time.Since(start))
		if err != nil || code != 200 {
			t.Fatalf("operator during the storm: %d %v %s", code, err, clip(body))
		}
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	slices.Sort(lat)
	t.Logf("guesser's answers in %s: %v; operator's GET during the storm: median %s, p90 %s, %d requests",
		storm, counts, lat[len(lat)/2], lat[len(lat)*9/10], len(lat))
	// Past the free five, checks are at least 250 ms apart (the storm
	// ends, but the requests admitted before its end may finish after it).
	b := ts.h.(*service).fails
	if most := b.free + 1 + int((storm+b.queue)/b.first); counts[401] > most {
		t.Errorf("%d passwords checked in %s, the spacing allows at most %d", counts[401], storm, most)
	}
	for code := range counts {
		if code != 401 && code != 503 {
			t.Errorf("guesser got %d", code)
		}
	}
}
