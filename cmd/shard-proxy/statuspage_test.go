package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/admin"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// chromiumFlags run Debian's chromium headless, with nothing of its own
// on the network, in a profile of the test's own.
var chromiumFlags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
	"--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=8000"}

// chromium runs the browser on url with extra flags and returns its
// standard output.
func chromium(t *testing.T, bin, url string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append(append([]string{}, chromiumFlags...), "--user-data-dir="+t.TempDir())
	args = append(append(args, extra...), url)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// TestStatusPageInBrowser loads the admin plane's status page in a real
// browser and checks what its script drew from the endpoints.
func TestStatusPageInBrowser(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed: run bash test/browser/provision.sh as root (Debian: apt-get install chromium); cannot render the status page")
	}
	p := startProxy(t, "--demo", "3", "--hot-keys-sample", "1")
	for i := range 40 {
		key := "7"
		if i%2 == 0 {
			key = strconv.Itoa(i)
		}
		if a := p.send(t, "GET", "/page", key, nil); a.Status != 200 {
			t.Fatalf("request with key %s: %v", key, a)
		}
	}
	if a := testutil.Do(t, p.client, testutil.NewRequest(t, "POST", p.adminURL("/broadcast/cache/flush"), nil)); a.Status != 200 {
		t.Fatalf("broadcast: %v", a)
	}
	var want admin.LocateAnswer
	if a := p.adminGet(t, "/locate?key=42"); a.Status != 200 || json.Unmarshal(a.Body, &want) != nil {
		t.Fatalf("/locate?key=42: %v", a)
	}

	dom := chromium(t, bin, p.adminURL("/#locate=42"), "--dump-dom")
	for _, c := range []struct{ what, pattern string }{
		{"N=3", `<b id="replicas">3</b>`},
		{"demo-0 ready", `<tr data-shard="demo-0" data-state="ready">`},
		{"demo-1 ready", `<tr data-shard="demo-1" data-state="ready">`},
		{"demo-2 ready", `<tr data-shard="demo-2" data-state="ready">`},
		{"three shards on the ring", `(<circle class="ready"[^>]*data-shard="demo-\d"[^>]*>.*){3}`},
		{"hot key 7", `<td class="hot">[^<]*\b7 \(\d`},
		{"a request rate", `<td class="num rate">\d+\.?\d*</td>`},
		{"42's owner", `<p id="locate-result" data-shard="` + regexp.QuoteMeta(want.Shard) + `">`},
		{"the broadcast", `<tr data-id="[^"]+"><td><code>[^<]+</code></td><td>POST</td><td>/cache/flush</td><td class="num">3</td><td class="num">0</td></tr>`},
		{"first topology", `N=3, 3 ready, ring rebuilt: first topology: 3 shards`},
	} {
		if !regexp.MustCompile(c.pattern).Match(dom) {
			t.Errorf("rendered page shows no %s (no match for %s)", c.what, c.pattern)
		}
	}
	if t.Failed() {
		t.Logf("rendered DOM:\n%s", dom)
	}

	// Traffic while the screenshot is taken gives its rates and p99s.
	stop := sendWhile(t, p)
	defer stop()
	shot := filepath.Join(t.TempDir(), "status-page.png")
	chromium(t, bin, p.adminURL("/#locate=42"), "--screenshot="+shot, "--window-size=1280,900", "--hide-scrollbars")
	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s: %v, %d bytes; want a PNG", shot, err, len(png))
	}
	if dir := os.Getenv("SHARD_PROXY_SCREENSHOT_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "status-page.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot written to %s", filepath.Join(dir, "status-page.png"))
	}
}
