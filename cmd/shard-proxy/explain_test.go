package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/admin"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// TestExplainCommand runs shard-proxy explain against a running proxy and
// checks its owner against where the data port sends the same request.
func TestExplainCommand(t *testing.T) {
	shards := testutil.StartShards(t, 4, "shard")
	p := startProxy(t, "--shards", shardList(shards), "--key", "header:X-Account,path:/accounts/{key},body:account.id")
	adminURL := "http://" + p.admin

	code, out, errOut := runCLI(t, nil, "explain", "--admin", adminURL, "-o", "json", "-X", "POST", "-d", `{"account":{"id":"a-17"}}`, "/orders")
	var a admin.ExplainAnswer
	if code != 0 || json.Unmarshal([]byte(out), &a) != nil {
		t.Fatalf("exit %d, stdout %s, stderr %s", code, out, errOut)
	}
	sent := p.send(t, "POST", "/orders", "", []byte(`{"account":{"id":"a-17"}}`))
	if a.Rule != "body:account.id" || a.Key != "a-17" || a.Shard != sent.Header.Get(header.Shard) ||
		strings.Join(a.Tried, ",") != "header:X-Account,path:/accounts/{key}" {
		t.Errorf("explain %+v; the data port sent it to %s", a, sent.Header.Get(header.Shard))
	}

	code, out, errOut = runCLI(t, nil, "explain", "/accounts/9/x", "-H", "X-Other: 1", "--admin", adminURL)
	if code != 0 || !strings.Contains(out, "path:/accounts/{key}") || !strings.Contains(out, `"9"`) {
		t.Errorf("table: exit %d, stdout\n%s\nstderr %s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, nil, "explain", "/x", "-H", "X-Account: 1", "-H", "x-account: 2", "--admin", adminURL)
	if code != 1 || !strings.Contains(errOut, "the data port would answer 400: ambiguous shard key (rule header:X-Account)") {
		t.Errorf("ambiguous: exit %d, stderr %s", code, errOut)
	}
	if code, _, errOut = runCLI(t, nil, "explain", "x", "--admin", adminURL); code != 2 || !strings.Contains(errOut, "must start with /") {
		t.Errorf("bad PATH: exit %d, stderr %s", code, errOut)
	}
	if code, _, errOut = runCLI(t, nil, "explain", "/x", "-H", "nocolon", "--admin", adminURL); code != 2 {
		t.Errorf("bad -H: exit %d, stderr %s", code, errOut)
	}
}
