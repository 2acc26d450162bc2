package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/load"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// runLoad runs shard-proxy load with args and -o json and returns the
// decoded report.
func runLoad(t *testing.T, args ...string) *load.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, proxyBinary(t), append([]string{"load", "-q", "-o", "json"}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("shard-proxy load %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	var rep load.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("load -o json printed no report: %v\n%s", err, out)
	}
	return &rep
}

// TestLoadReportInBrowser: a load run through a real proxy to three real
// shards writes an HTML page that headless Chromium renders with the
// table, a latency line and a pair of key bars for every shard, and
// nothing fetched from elsewhere.
func TestLoadReportInBrowser(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed: run bash test/browser/provision.sh as root (Debian: apt-get install chromium); cannot render the load report")
	}
	shards := testutil.StartShards(t, 3, "web")
	p := startProxy(t, "--shards", shardList(shards), "--key", "header:X-Shard-Key")
	page := filepath.Join(t.TempDir(), "report.html")
	rep := runLoad(t, "--rate", "200", "--duration", "3s", "--keys", "seq:300", "-H", "X-Shard-Key: {key}",
		"--report", page, p.dataURL("/items"))
	if len(rep.Shards) != 3 || rep.All.Requests != 600 {
		t.Fatalf("report: %d shards, %d requests; want 3 shards and 600 requests", len(rep.Shards), rep.All.Requests)
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?i)(src|href)=["']?https?:`).Find(html); m != nil {
		t.Errorf("the page loads %s from elsewhere; want it self-contained", m)
	}
	dom := chromium(t, bin, "file://"+page, "--dump-dom")
	for _, r := range rep.Shards {
		for _, c := range []struct{ what, pattern string }{
			{"table row", fmt.Sprintf(`<tr data-shard="%s"><td>%[1]s</td><td class="num requests">%d</td>`, r.Shard, r.Requests)},
			{"latency line", fmt.Sprintf(`<polyline data-shard="%s"[^>]*points="(\d+\.\d,\d+\.\d ?){2,}"`, r.Shard)},
			{"requests bar", fmt.Sprintf(`<rect class="requests" data-shard="%s" data-requests="%d"`, r.Shard, r.Requests)},
			{"keys bar", fmt.Sprintf(`<rect class="keys" data-shard="%s" data-keys="%d"`, r.Shard, r.Keys)},
			{"legend", fmt.Sprintf(`<text class="legend"[^>]*>%s</text>`, r.Shard)},
		} {
			if !regexp.MustCompile(c.pattern).Match(dom) {
				t.Errorf("rendered page shows no %s for %s (no match for %s)", c.what, r.Shard, c.pattern)
			}
		}
	}
	if t.Failed() {
		t.Logf("rendered DOM:\n%s", dom)
	}
	shot := filepath.Join(t.TempDir(), "load-report.png")
	chromium(t, bin, "file://"+page, "--screenshot="+shot, "--window-size=1000,1150", "--hide-scrollbars")
	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s: %v, %d bytes; want a PNG", shot, err, len(png))
	}
	if dir := os.Getenv("SHARD_PROXY_SCREENSHOT_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "load-report.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoadDirect: --direct sends each request straight to its owner pod
// through the public Go client: with the URL's host a dead address, every
// request still reaches a shard, each shard gets the keys the proxy would
// have sent it, and the rows name the same shards with the same counts.
func TestLoadDirect(t *testing.T) {
	shards := testutil.StartShards(t, 3, "web")
	p := startProxy(t, "--shards", shardList(shards), "--key", "path:/accounts/{key}")
	viaProxy := runLoad(t, "--rate", "300", "--duration", "1s", "--keys", "seq:300", p.dataURL("/accounts/{key}"))
	direct := runLoad(t, "--rate", "300", "--duration", "1s", "--keys", "seq:300", "--direct", p.adminURL(""),
		"http://"+testutil.DeadAddr(t)+"/accounts/{key}")
	if direct.Via != "direct" || direct.All.Requests != 300 || direct.All.Status["200"] != 300 {
		t.Fatalf("direct run: via %s, %d requests, status %v; want direct, 300 answered 200", direct.Via, direct.All.Requests, direct.All.Status)
	}
	if len(direct.Shards) != 3 {
		t.Fatalf("direct run: rows %+v; want one per shard", direct.Shards)
	}
	for i, r := range direct.Shards {
		if want := viaProxy.Shards[i]; r.Shard != want.Shard || r.Requests != want.Requests || r.Keys != want.Keys {
			t.Errorf("direct row %s: %d requests, %d keys; through the proxy %s had %d and %d",
				r.Shard, r.Requests, r.Keys, want.Shard, want.Requests, want.Keys)
		}
	}
	total := 0
	for _, s := range shards {
		total += len(s.Requests())
	}
	if total != 600 {
		t.Errorf("the shards got %d requests; want 300 through the proxy and 300 direct", total)
	}
}
