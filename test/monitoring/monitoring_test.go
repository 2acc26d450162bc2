// Package monitoring checks deploy/monitoring against the proxy: the
// PrometheusRule passes `promtool check rules`, every shard_proxy_* series
// that the alerts and the Grafana dashboard query is one the real binary
// exports, and the dashboard is well formed.
package monitoring

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"sigs.k8s.io/yaml"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

const (
	ruleFile      = "../../deploy/monitoring/prometheusrule.yaml"
	dashboardFile = "../../deploy/monitoring/shard-proxy-dashboard.json"

	// dsVar is the dashboard's datasource template variable.
	dsVar = "datasource"
)

// notYetExported lists the series the rules or the dashboard use that the
// proxy does not export yet (a rule written ahead of its metric). The test
// fails when one of them is exported, so that the list cannot go stale:
// remove the name then. Empty: shard_proxy_ring_info, which the fingerprint
// alert needs, is exported since it was added.
var notYetExported []string

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.LeakOptions(goleak.Cleanup(func(code int) {
		proxyBuild.Remove()
		os.Exit(code)
	}))...)
}

var proxyBuild = &testutil.Builder{Pkg: "../../cmd/shard-proxy"}

// promRule is the part of a PrometheusRule that Prometheus reads: its spec
// is a rules file.
type promRule struct {
	Kind string `json:"kind"`
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert  string `json:"alert"`
				Record string `json:"record"`
				Expr   string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// readRuleSpec returns the PrometheusRule's spec, raw (for promtool) and
// decoded.
func readRuleSpec(t *testing.T) (map[string]any, promRule) {
	t.Helper()
	data, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Spec map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatalf("%s: %v", ruleFile, err)
	}
	var pr promRule
	if err := yaml.Unmarshal(data, &pr); err != nil {
		t.Fatalf("%s: %v", ruleFile, err)
	}
	if pr.Kind != "PrometheusRule" {
		t.Fatalf("%s: kind %q, want PrometheusRule", ruleFile, pr.Kind)
	}
	if len(pr.Spec.Groups) == 0 {
		t.Fatalf("%s: no spec.groups", ruleFile)
	}
	return raw.Spec, pr
}

// TestRulesPromtool runs `promtool check rules` on the PrometheusRule's
// spec.groups, written out as a plain Prometheus rules file.
func TestRulesPromtool(t *testing.T) {
	spec, _ := readRuleSpec(t)
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found on PATH: the rules are not checked; install it with `bash test/monitoring/provision.sh` (as root: Debian's prometheus package) or `make provision`")
	}
	out, err := yaml.Marshal(map[string]any{"groups": spec["groups"]})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "shard-proxy.rules.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	msg, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules (spec.groups of %s): %v\n%s\nrules file:\n%s", ruleFile, err, msg, out)
	}
	t.Logf("promtool check rules: %s", bytes.TrimSpace(msg))
}

// TestDashboardPromtool checks that the dashboard's queries are valid
// PromQL: promtool checks them as recording rules, with the dashboard's
// variables replaced by values Grafana could give them.
func TestDashboardPromtool(t *testing.T) {
	d := readDashboard(t)
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found on PATH: the dashboard's queries are not checked; install it with `bash test/monitoring/provision.sh` (as root: Debian's prometheus package) or `make provision`")
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$namespace", ".*", "$job", ".*", "$shard", ".*")
	var rules []map[string]string
	for _, p := range allPanels(d.Panels) {
		for _, q := range p.Targets {
			rules = append(rules, map[string]string{
				"record": fmt.Sprintf("dashboard:panel_%d:%s", p.ID, strings.ToLower(q.RefID)),
				"expr":   vars.Replace(q.Expr),
			})
		}
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules (the queries of %s): %v\n%s\nrules file:\n%s", dashboardFile, err, msg, out)
	}
}

// TestRulesAlerts pins the alerts that DESIGN.md asks for.
func TestRulesAlerts(t *testing.T) {
	_, pr := readRuleSpec(t)
	var alerts []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts = append(alerts, r.Alert)
			}
		}
	}
	for _, want := range []string{
		"ShardProxyShardNotReady",
		"ShardProxyShardErrorRatioHigh",
		"ShardProxyOwnerWaitTimeouts",
		"ShardProxyRingFingerprintMismatch",
		"ShardProxyCertificateExpiresSoon",
		"ShardProxyCertificateReloadFailing",
	} {
		if !slices.Contains(alerts, want) {
			t.Errorf("%s: no alert %s (have %v)", ruleFile, want, alerts)
		}
	}
}

// dashboard is the part of a Grafana dashboard that the tests read.
type dashboard struct {
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource json.RawMessage `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dec.More() {
		t.Fatalf("%s: more than one JSON value", dashboardFile)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// isDSVar reports whether a datasource reference is the datasource template
// variable, in either form Grafana writes: "${datasource}" or
// {"type": "prometheus", "uid": "${datasource}"}.
func isDSVar(raw json.RawMessage) bool {
	refs := []string{"$" + dsVar, "${" + dsVar + "}"}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return slices.Contains(refs, s)
	}
	var obj struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		return obj.Type == "prometheus" && slices.Contains(refs, obj.UID)
	}
	return false
}

// TestDashboard checks that the dashboard parses, has a Prometheus
// datasource template variable, and that every panel and every query uses
// it, with only panel types that ship with Grafana.
func TestDashboard(t *testing.T) {
	d := readDashboard(t)
	if d.Title == "" {
		t.Error("the dashboard has no title")
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == dsVar {
			var q string
			_ = json.Unmarshal(v.Query, &q)
			if v.Type != "datasource" || q != "prometheus" {
				t.Errorf("template variable %s: type %q query %q, want a datasource variable of type prometheus", dsVar, v.Type, q)
			}
			hasDS = true
			continue
		}
		if len(v.Datasource) > 0 && !isDSVar(v.Datasource) {
			t.Errorf("template variable %s: datasource %s, want the $%s variable", v.Name, v.Datasource, dsVar)
		}
	}
	if !hasDS {
		t.Fatalf("no template variable %q", dsVar)
	}
	builtin := []string{"row", "timeseries", "stat", "gauge", "bargauge", "table", "heatmap", "text"}
	ps := allPanels(d.Panels)
	if len(ps) == 0 {
		t.Fatal("the dashboard has no panels")
	}
	ids := map[int]string{}
	queries := 0
	for _, p := range ps {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("%s: id also used by %q", name, prev)
		}
		ids[p.ID] = p.Title
		if !slices.Contains(builtin, p.Type) {
			t.Errorf("%s: type %q is not a built-in panel (no plugins)", name, p.Type)
		}
		if !isDSVar(p.Datasource) {
			t.Errorf("%s: datasource %s, want the $%s template variable", name, p.Datasource, dsVar)
		}
		if p.Type != "row" && p.Type != "text" && len(p.Targets) == 0 {
			t.Errorf("%s: no queries", name)
		}
		for _, q := range p.Targets {
			queries++
			if strings.TrimSpace(q.Expr) == "" {
				t.Errorf("%s, query %s: empty expr", name, q.RefID)
			}
			if len(q.Datasource) > 0 && !isDSVar(q.Datasource) {
				t.Errorf("%s, query %s: datasource %s, want the $%s template variable", name, q.RefID, q.Datasource, dsVar)
			}
		}
	}
	t.Logf("%d panels, %d queries", len(ps), queries)
}

// seriesRE finds the shard_proxy_* series names in PromQL.
var seriesRE = regexp.MustCompile(`\bshard_proxy_[a-zA-Z0-9_]+`)

// usedSeries returns the shard_proxy_* names in the rule expressions and
// the dashboard's queries and template variables, each with where it is
// used.
func usedSeries(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(where, expr string) {
		for _, name := range seriesRE.FindAllString(expr, -1) {
			if !slices.Contains(used[name], where) {
				used[name] = append(used[name], where)
			}
		}
	}
	_, pr := readRuleSpec(t)
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			add("rule "+r.Alert+r.Record, r.Expr)
		}
	}
	d := readDashboard(t)
	for _, p := range allPanels(d.Panels) {
		for _, q := range p.Targets {
			add(fmt.Sprintf("panel %q", p.Title), q.Expr)
		}
	}
	for _, v := range d.Templating.List {
		add("variable "+v.Name, v.Definition)
		add("variable "+v.Name, string(v.Query))
	}
	if len(used) == 0 {
		t.Fatal("no shard_proxy_* series found in the rules or the dashboard")
	}
	return used
}

// TestSeriesExported starts the proxy with demo shards, makes it count
// answers, key errors and a broadcast, scrapes its /metrics and checks that
// every series the rules and the dashboard use is there. Histograms are
// queried as their _bucket, _sum and _count samples, which is what the
// scrape shows. The series in notYetExported must be absent.
func TestSeriesExported(t *testing.T) {
	used := usedSeries(t)
	// With a TLS listener, so that the certificate series exist.
	ca := testutil.NewCA(t, "test CA")
	leaf := ca.Issue(t, time.Time{}, "proxy.test")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if os.WriteFile(certFile, leaf.CertPEM, 0o600) != nil || os.WriteFile(keyFile, leaf.KeyPEM, 0o600) != nil {
		t.Fatal("writing the certificate files")
	}
	p := startProxy(t, "--demo", "3", "--tls-listen", "127.0.0.1:0", "--tls-cert-file", certFile, "--tls-key-file", keyFile)

	for i := range 20 {
		a := p.do(t, http.MethodGet, p.dataURL(fmt.Sprintf("/item/%d", i)), map[string]string{"X-Shard-Key": fmt.Sprintf("key-%d", i)})
		if a.Status != http.StatusOK {
			t.Fatalf("GET with a key: %v", a)
		}
	}
	if a := p.do(t, http.MethodGet, p.dataURL("/item/none"), nil); a.Status != http.StatusBadRequest {
		t.Fatalf("GET without a key: %v, want 400", a)
	}
	if a := p.do(t, http.MethodPost, p.adminURL("/broadcast/flush"), nil); a.Status/100 != 2 {
		t.Fatalf("POST /broadcast/flush: %v, want 2xx", a)
	}

	a := p.do(t, http.MethodGet, p.adminURL("/metrics"), nil)
	if a.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %v", a)
	}
	exported := sampleNames(a.Body)
	for _, want := range []string{"shard_proxy_requests_total", "shard_proxy_key_errors_total", "shard_proxy_broadcasts_total"} {
		if !exported[want] {
			t.Fatalf("the scrape has no %s after the requests; the test's own traffic did not count:\n%s", want, a.Body)
		}
	}

	names := make([]string, 0, len(used))
	for name := range used {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		pending := slices.Contains(notYetExported, name)
		switch {
		case exported[name] && pending:
			t.Errorf("%s is exported now: remove it from notYetExported", name)
		case !exported[name] && !pending:
			t.Errorf("%s (used by %s) is not exported by the proxy", name, strings.Join(used[name], ", "))
		case !exported[name]:
			t.Logf("%s: not exported yet, as notYetExported says (used by %s)", name, strings.Join(used[name], ", "))
		}
	}
	for _, name := range notYetExported {
		if _, ok := used[name]; !ok {
			t.Errorf("notYetExported lists %s, which neither the rules nor the dashboard use: remove it", name)
		}
	}
	if t.Failed() {
		var have []string
		for name := range exported {
			if strings.HasPrefix(name, "shard_proxy_") {
				have = append(have, name)
			}
		}
		sort.Strings(have)
		t.Logf("exported shard_proxy_* samples:\n  %s", strings.Join(have, "\n  "))
	}
}

// sampleNames returns the names of the samples in a Prometheus text
// exposition (a histogram shows as its _bucket, _sum and _count).
func sampleNames(body []byte) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// proxyProc is a running shard-proxy.
type proxyProc struct {
	data, admin string
	client      *http.Client
}

func (p *proxyProc) dataURL(path string) string  { return "http://" + p.data + path }
func (p *proxyProc) adminURL(path string) string { return "http://" + p.admin + path }

func (p *proxyProc) do(t *testing.T, method, url string, header map[string]string) testutil.Answer {
	t.Helper()
	req := testutil.NewRequest(t, method, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return testutil.Do(t, p.client, req)
}

// startProxy starts the proxy binary on loopback ports chosen by the
// kernel, waits for its startup line and for /readyz to answer 200, and
// kills it when the test ends.
func startProxy(t *testing.T, args ...string) *proxyProc {
	t.Helper()
	all := append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(proxyBuild.Path(t), all...)
	cmd.Env = testutil.ChildEnv()
	logs := testutil.NewLog()
	cmd.Stdout = io.Discard
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting shard-proxy: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
		if out := logs.String(); strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("the proxy reported a data race:\n%s", out)
		} else if t.Failed() {
			t.Logf("shard-proxy %s\nstderr (tail):\n%s", strings.Join(all, " "), logs.Tail(50))
		}
	})
	rec, err := logs.Wait("shard-proxy starting", done, 30*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.Tail(20))
	}
	p := &proxyProc{client: testutil.Client(t)}
	var ok1, ok2 bool
	p.data, ok1 = rec["listen"].(string)
	p.admin, ok2 = rec["admin_listen"].(string)
	if !ok1 || !ok2 {
		t.Fatalf("startup log line has no listen or admin_listen address: %v", rec)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := p.client.Get(p.adminURL("/readyz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz did not answer 200 within 15s (last: %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
