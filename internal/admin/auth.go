package admin

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

// TokenAuth checks "Authorization: Bearer <token>" against a token file. The
// file is re-read when its size or modification time changes, so a rotated
// Kubernetes Secret takes effect without a restart. Safe for concurrent use.
type TokenAuth struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	token   []byte
	size    int64
	modTime time.Time
}

// NewTokenAuth reads the token from path. An empty or unreadable file is an
// error: an admin plane must not start open by accident.
func NewTokenAuth(path string, log *slog.Logger) (*TokenAuth, error) {
	if log == nil {
		log = slog.Default()
	}
	a := &TokenAuth{path: path, log: log}
	if err := a.reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// reload reads the file if it changed since the last read. On failure the
// last good token stays in force.
func (a *TokenAuth) reload() error {
	fi, err := os.Stat(a.path)
	if err != nil {
		return fmt.Errorf("admin token file: %w", err)
	}
	if a.token != nil && fi.Size() == a.size && fi.ModTime().Equal(a.modTime) {
		return nil
	}
	raw, err := os.ReadFile(a.path)
	if err != nil {
		return fmt.Errorf("admin token file: %w", err)
	}
	tok := bytes.TrimSpace(raw)
	if len(tok) == 0 {
		return errors.New("admin token file " + a.path + " is empty")
	}
	if a.token != nil {
		a.log.Info("admin token reloaded", "file", a.path)
	}
	a.token, a.size, a.modTime = tok, fi.Size(), fi.ModTime()
	return nil
}

// current returns the token in force, reloading it first if the file changed.
func (a *TokenAuth) current() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.reload(); err != nil {
		a.log.Error("keeping the previous admin token", "err", err)
	}
	return a.token
}

// TokenHeader carries the admin token where Authorization cannot: through
// the Kubernetes API server's service proxy (the CLI's kube:// admin URLs),
// which takes Authorization to authenticate the caller and drops it.
const TokenHeader = "X-Shard-Proxy-Token"

// Allowed reports whether r carries the current token, as a bearer token
// or in TokenHeader.
func (a *TokenAuth) Allowed(r *http.Request) bool {
	const prefix = "Bearer "
	tok := r.Header.Get(TokenHeader)
	if h := r.Header.Get("Authorization"); tok == "" && len(h) > len(prefix) && equalFoldASCII(h[:len(prefix)], prefix) {
		tok = h[len(prefix):]
	}
	if tok == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(tok), a.current()) == 1
}

// Wrap lets only requests with the token reach h; others get 401.
func (a *TokenAuth) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.Allowed(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shard-proxy admin"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: "unauthorized: send Authorization: Bearer <admin token>"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func equalFoldASCII(a, b string) bool {
	return len(a) == len(b) && bytes.EqualFold([]byte(a), []byte(b))
}
