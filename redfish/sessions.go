package redfish

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"
)

type session struct {
	id, user string
	created  time.Time
	used     time.Time
}

// sessions are the open logins. Tokens are kept only as SHA-256 hashes and
// looked up by hash, so neither a memory dump nor lookup timing gives one.
type sessions struct {
	mu     sync.Mutex
	byHash map[[32]byte]*session
	byID   map[string][32]byte
	idle   time.Duration
	max    int
	now    func() time.Time
}

func newSessions(idle time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{byHash: map[[32]byte]*session{}, byID: map[string][32]byte{}, idle: idle, max: max, now: now}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// expire drops idle sessions; the caller holds mu.
func (ss *sessions) expire() {
	now := ss.now()
	for h, s := range ss.byHash {
		if now.Sub(s.used) > ss.idle {
			delete(ss.byHash, h)
			delete(ss.byID, s.id)
		}
	}
}

// create opens a session; ok is false when the cap is reached.
func (ss *sessions) create(user string) (token string, s session, ok bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.expire()
	if len(ss.byHash) >= ss.max {
		return "", session{}, false
	}
	token = randomHex(32)
	now := ss.now()
	sp := &session{id: randomHex(8), user: user, created: now, used: now}
	h := sha256.Sum256([]byte(token))
	ss.byHash[h] = sp
	ss.byID[sp.id] = h
	return token, *sp, true
}

// lookup returns the user of a live session and marks it used.
func (ss *sessions) lookup(token string) (string, bool) {
	h := sha256.Sum256([]byte(token))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.byHash[h]
	if !ok {
		return "", false
	}
	now := ss.now()
	if now.Sub(s.used) > ss.idle {
		delete(ss.byHash, h)
		delete(ss.byID, s.id)
		return "", false
	}
	s.used = now
	return s.user, true
}

func (ss *sessions) get(id string) (session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.expire()
	h, ok := ss.byID[id]
	if !ok {
		return session{}, false
	}
	return *ss.byHash[h], true
}

func (ss *sessions) exists(id string) bool {
	_, ok := ss.get(id)
	return ok
}

func (ss *sessions) ids() []string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.expire()
	out := make([]string, 0, len(ss.byID))
	for id := range ss.byID {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func (ss *sessions) remove(id string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	h, ok := ss.byID[id]
	if ok {
		delete(ss.byHash, h)
		delete(ss.byID, id)
	}
	return ok
}

func (s *service) sessionService() doc {
	return doc{
		"@odata.id": s.paths.sessionService, "@odata.type": "#SessionService.v1_1_0.SessionService",
		"Id": "SessionService", "Name": "Session Service", "ServiceEnabled": true,
		"SessionTimeout": int(s.opt.SessionTimeout / time.Second), "Status": statusOK,
		"Sessions": link(s.paths.sessions),
	}
}

func (s *service) sessionCollection() doc {
	var ms []string
	for _, id := range s.sessions.ids() {
		ms = append(ms, s.paths.sessions+"/"+id)
	}
	return collection(s.paths.sessions, "SessionCollection", "Session Collection", ms...)
}

// sessionDoc is nil once the session is gone (it may expire between
// routing and answering).
func (s *service) sessionDoc(id string) doc {
	se, ok := s.sessions.get(id)
	if !ok {
		return nil
	}
	return doc{
		"@odata.id": s.paths.sessions + "/" + id, "@odata.type": "#Session.v1_0_0.Session",
		"Id": id, "Name": "User Session", "UserName": se.user,
	}
}

// login is POST to the Sessions collection: the one request that needs no
// credentials but carries them in its body.
func (s *service) login(w http.ResponseWriter, r *http.Request) *rfError {
	body, rerr := readObject(r)
	if rerr != nil {
		return rerr
	}
	var user, pass string
	for _, k := range sortedKeys(body) {
		var err error
		switch k {
		case "UserName":
			err = json.Unmarshal(body[k], &user)
		case "Password":
			err = json.Unmarshal(body[k], &pass)
		default:
			return errPropertyUnknown(k, []string{"UserName", "Password"})
		}
		if err != nil {
			return errValueType(k, "(not shown)", "a string")
		}
	}
	for _, k := range []string{"UserName", "Password"} {
		if _, ok := body[k]; !ok {
			return &rfError{status: http.StatusBadRequest, id: "PropertyMissing",
				msg:        "The property " + k + " is a required property and must be included in the request.",
				args:       []string{k},
				resolution: "Ensure that the property is in the request body and has a valid value and resubmit the request if the operation failed."}
		}
	}
	if err := s.checkPassword(r, user, pass); err != nil {
		return err
	}
	token, se, ok := s.sessions.create(user)
	if !ok {
		return errSessionLimit()
	}
	if rec, ok := w.(*statusRecorder); ok {
		rec.user = user
	}
	w.Header().Set("X-Auth-Token", token)
	w.Header().Set("Location", s.paths.sessions+"/"+se.id)
	return s.writeDoc(w, http.StatusCreated, func() doc { return s.sessionDoc(se.id) })
}

func (s *service) logout(id string) func(http.ResponseWriter, *http.Request) *rfError {
	return func(w http.ResponseWriter, r *http.Request) *rfError {
		if !s.sessions.remove(id) {
			return errNotFound(r.URL.Path)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}
