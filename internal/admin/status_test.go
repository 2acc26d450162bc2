package admin

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// TestStatusPageNeedsNoToken checks that the page and its files are served
// without the admin token, as they carry no data, while the endpoints the
// page reads still need it.
func TestStatusPageNeedsNoToken(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := NewTokenAuth(tokenFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := startAdmin(t, Config{Auth: auth}, &topo)

	for _, tc := range []struct{ path, contentType, contains string }{
		{"/", "text/html", `<script src="/status/status.js"`},
		{"/status/status.js", "text/javascript", "async function refresh()"},
		{"/status/status.css", "text/css", "--ready"},
	} {
		r := call(t, "GET", a.url+tc.path, nil, nil)
		if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), tc.contentType) || !strings.Contains(string(r.Body), tc.contains) {
			t.Errorf("GET %s without token: %d %s, want 200 %s containing %q", tc.path, r.Status, r.Header.Get("Content-Type"), tc.contentType, tc.contains)
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q, want one that allows only the page's own files", tc.path, csp)
		}
	}
	for _, path := range []string{"/status/nope.js", "/status/", "/index.html", "/nope"} {
		if r := call(t, "GET", a.url+path, nil, nil); r.Status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, r.Status)
		}
	}
	for _, path := range []string{"/shards", "/hotkeys?n=5", "/broadcasts", "/locate?key=42"} {
		if r := call(t, "GET", a.url+path, nil, nil); r.Status != http.StatusUnauthorized {
			t.Errorf("GET %s without token: %d, want 401", path, r.Status)
		}
		if r := call(t, "GET", a.url+path, nil, http.Header{"Authorization": {"Bearer s3cret"}}); r.Status != http.StatusOK {
			t.Errorf("GET %s with the token: %d %s, want 200", path, r.Status, r.Body)
		}
	}
	if r := call(t, "GET", a.url+"/metrics", nil, nil); r.Status != http.StatusOK {
		t.Errorf("GET /metrics without token: %d, want 200", r.Status)
	}
}
