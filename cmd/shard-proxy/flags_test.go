package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/ring"
)

// envOf returns a getenv that reads vars.
func envOf(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

// TestCLIRejects checks that each bad flag, combination or environment value
// exits with status 2 and exactly one line on stderr that names what is wrong
// and says what would be right, as the README's Configuration section
// promises.
func TestCLIRejects(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		// want are substrings of the one stderr line: the flag or variable
		// at fault, and a hint of what would be right.
		want []string
	}{
		{name: "no source", args: nil,
			want: []string{"--demo", "--shards", "--kube-service", "--dns-service"}},
		{name: "two sources", args: []string{"--demo", "2", "--shards", "127.0.0.1:1"},
			want: []string{"exactly one", "--demo", "--shards"}},
		{name: "negative demo", args: []string{"--demo", "-1"},
			want: []string{"--demo", "-1", "1 to 1024"}},
		{name: "unknown ring", args: []string{"--demo", "2", "--ring", "foo"},
			want: []string{"--ring", `"foo"`, "jump", "consistent", "modulus"}},
		{name: "unknown key rule kind", args: []string{"--demo", "2", "--key", "bogus:x"},
			want: []string{"--key", "bogus:x", "header:NAME", "body:FIELD"}},
		{name: "path rule without {key}", args: []string{"--demo", "2", "--key", "path:/no-key-segment"},
			want: []string{"--key", "path:/no-key-segment", "{key}"}},
		{name: "zero max body", args: []string{"--demo", "2", "--max-body-bytes", "0"},
			want: []string{"max-body-bytes", `"0"`, "positive", "4MiB"}},
		{name: "non-numeric max body", args: []string{"--demo", "2", "--max-body-bytes", "abc"},
			want: []string{"max-body-bytes", `"abc"`, "positive", "4MiB"}},
		{name: "zero max body depth", args: []string{"--demo", "2", "--max-body-depth", "0"},
			want: []string{"--max-body-depth", "1 to 10000", "64"}},
		{name: "negative max request body", args: []string{"--demo", "2", "--max-request-body-bytes", "-1"},
			want: []string{"max-request-body-bytes", `"-1"`, "0 (no limit)", "100MiB"}},
		{name: "zero upstream timeout", args: []string{"--demo", "2", "--upstream-timeout", "0"},
			want: []string{"--upstream-timeout", "positive", "30s"}},
		{name: "negative idle trim", args: []string{"--demo", "2", "--idle-trim", "-1s"},
			want: []string{"--idle-trim", "0 to never trim"}},
		{name: "unparsable upstream timeout", args: []string{"--demo", "2", "--upstream-timeout", "soon"},
			want: []string{"upstream-timeout", `"soon"`, "30s"}},
		{name: "non-numeric demo", args: []string{"--demo", "three"},
			want: []string{"demo", `"three"`, "number"}},
		{name: "unknown log format", args: []string{"--demo", "2", "--log-format", "xml"},
			want: []string{"--log-format", `"xml"`, "text or json"}},
		{name: "unknown log level", args: []string{"--demo", "2", "--log-level", "loud"},
			want: []string{"--log-level", `"loud"`, "debug, info, warn or error"}},
		{name: "unknown flag", args: []string{"--demo", "2", "--frobnicate"},
			want: []string{"frobnicate", "unknown flag", "--help"}},
		{name: "replicas without dns-service", args: []string{"--demo", "2", "--replicas", "3"},
			want: []string{"--replicas", "--dns-service"}},
		{name: "dns-service without replicas", args: []string{"--dns-service", "web.default"},
			want: []string{"--dns-service", "--replicas N"}},
		{name: "stray argument", args: []string{"--demo", "2", "extra"},
			want: []string{`"extra"`, "flags start with --", "locate"}},

		{name: "env: unknown ring", args: []string{"--demo", "2"},
			env:  map[string]string{"SHARD_PROXY_RING": "bogus"},
			want: []string{"SHARD_PROXY_RING", `"bogus"`, "modulus"}},
		{name: "env: unknown log format", args: []string{"--demo", "2"},
			env:  map[string]string{"SHARD_PROXY_LOG_FORMAT": "xml"},
			want: []string{"SHARD_PROXY_LOG_FORMAT", `"xml"`, "text or json"}},
		{name: "env: bad max body", args: []string{"--demo", "2"},
			env:  map[string]string{"SHARD_PROXY_MAX_BODY_BYTES": "abc"},
			want: []string{"SHARD_PROXY_MAX_BODY_BYTES", `"abc"`, "4MiB"}},
		{name: "env: unparsable upstream timeout", args: []string{"--demo", "2"},
			env:  map[string]string{"SHARD_PROXY_UPSTREAM_TIMEOUT": "soon"},
			want: []string{"SHARD_PROXY_UPSTREAM_TIMEOUT", `"soon"`, "30s"}},
		{name: "env: non-numeric demo", args: nil,
			env:  map[string]string{"SHARD_PROXY_DEMO": "three"},
			want: []string{"SHARD_PROXY_DEMO", `"three"`, "number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli(tt.args, envOf(tt.env), &stdout, &stderr, nil)
			if code != 2 {
				t.Errorf("cli(%q) = %d, want 2", tt.args, code)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
			line, ok := strings.CutSuffix(stderr.String(), "\n")
			if !ok || line == "" || strings.Contains(line, "\n") {
				t.Fatalf("stderr = %q, want exactly one line", stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr line %q does not contain %q", line, w)
				}
			}
		})
	}
}

func TestCLIHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		t.Run(arg, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := cli([]string{arg}, envOf(nil), &stdout, &stderr, nil); code != 0 {
				t.Errorf("cli(%q) = %d, want 0", arg, code)
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr = %q, want nothing", stderr.String())
			}
			out := stdout.String()
			for _, w := range []string{"Usage:", "shard-proxy [flags]", "SHARD_PROXY_", "-demo", "-shards", "-ring", "-key", "-max-body-bytes"} {
				if !strings.Contains(out, w) {
					t.Errorf("usage does not mention %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestCLIListenFails checks that a configuration that is valid but cannot be
// served, such as a data address already in use, exits with status 1 and
// says which flag.
func TestCLIListenFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr bytes.Buffer
	args := []string{"--shards", testutil.DeadAddr(t), "--listen", ln.Addr().String(), "--admin-listen", "127.0.0.1:0"}
	if code := cli(args, envOf(nil), &stdout, &stderr, nil); code != 1 {
		t.Errorf("cli(%q) = %d, want 1", args, code)
	}
	if got := stderr.String(); !strings.Contains(got, "--listen") || !strings.Contains(got, "address already in use") {
		t.Errorf("stderr = %q, want it to name --listen and say the address is in use", got)
	}
}

// parseOptions parses args and env as cli does, without running the proxy.
func parseOptions(t *testing.T, args []string, env map[string]string) *options {
	t.Helper()
	var o options
	from, err := parseFlags(newFlagSet(&o), args, envOf(env))
	o.from = from
	if err != nil {
		t.Fatalf("parseFlags(%q, %v): %v", args, env, err)
	}
	if err := o.validate(); err != nil {
		t.Fatalf("validate after parseFlags(%q, %v): %v", args, env, err)
	}
	return &o
}

// TestEnvironment checks that SHARD_PROXY_<FLAG> sets a flag that is not
// given, and that the flag wins when both are.
func TestEnvironment(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(o *options) (got, want any)
	}{
		{name: "ring default", args: []string{"--demo", "1"},
			check: func(o *options) (any, any) { return o.ringCfg.Algorithm, ring.Jump }},
		{name: "ring from env", args: []string{"--demo", "1"},
			env:   map[string]string{"SHARD_PROXY_RING": "modulus"},
			check: func(o *options) (any, any) { return o.ringCfg.Algorithm, ring.Modulus }},
		{name: "ring flag wins", args: []string{"--demo", "1", "--ring", "consistent"},
			env:   map[string]string{"SHARD_PROXY_RING": "modulus"},
			check: func(o *options) (any, any) { return o.ringCfg.Algorithm, ring.Consistent }},
		{name: "ring flag wins even when env is bad", args: []string{"--demo", "1", "--ring", "jump"},
			env:   map[string]string{"SHARD_PROXY_RING": "bogus"},
			check: func(o *options) (any, any) { return o.ringCfg.Algorithm, ring.Jump }},
		{name: "empty env is ignored", args: []string{"--demo", "1"},
			env:   map[string]string{"SHARD_PROXY_RING": ""},
			check: func(o *options) (any, any) { return o.ringCfg.Algorithm, ring.Jump }},
		{name: "dashed flag name", args: []string{"--demo", "1"},
			env:   map[string]string{"SHARD_PROXY_ADMIN_LISTEN": "127.0.0.1:9999"},
			check: func(o *options) (any, any) { return o.adminListen, "127.0.0.1:9999" }},
		{name: "byte size from env", args: []string{"--demo", "1"},
			env:   map[string]string{"SHARD_PROXY_MAX_BODY_BYTES": "1KiB"},
			check: func(o *options) (any, any) { return int(o.maxBody), 1024 }},
		{name: "duration from env", args: []string{"--demo", "1"},
			env:   map[string]string{"SHARD_PROXY_UPSTREAM_TIMEOUT": "2s"},
			check: func(o *options) (any, any) { return o.upstreamTO, 2 * time.Second }},
		{name: "source from env", args: nil,
			env:   map[string]string{"SHARD_PROXY_DEMO": "3"},
			check: func(o *options) (any, any) { return o.demo, 3 }},
		{name: "key rules from env", args: []string{"--demo", "1"},
			env:   map[string]string{"SHARD_PROXY_KEY": "query:account,header:X-Account"},
			check: func(o *options) (any, any) { return len(o.rules), 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := parseOptions(t, tt.args, tt.env)
			if got, want := tt.check(o); got != want {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// TestDefaults checks the defaults in the README's flag table. The values
// are written out rather than taken from the constants: a changed constant
// must fail here until the README says the same.
func TestDefaults(t *testing.T) {
	o := parseOptions(t, []string{"--demo", "1"}, nil)
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"--listen", o.listen, ":8080"},
		{"--admin-listen", o.adminListen, ":9090"},
		{"--ring", o.ringCfg.Algorithm, ring.Jump},
		{"--partitions", o.partitions, 7919},
		{"--key", o.key, "header:X-Shard-Key"},
		{"--max-body-bytes", int(o.maxBody), 4 << 20},
		{"--upstream-timeout", o.upstreamTO, 30 * time.Second},
		{"--idle-trim", o.idleTrim, time.Second},
		{"--log-format", o.logFormat, "text"},
		{"--cluster-domain", o.domain, "cluster.local"},
	} {
		if c.got != c.want {
			t.Errorf("%s default = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestByteSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{"1", 1}, {"4194304", 4 << 20}, {"1KiB", 1 << 10}, {"4MiB", 4 << 20}, {"1GiB", 1 << 30},
		{"2K", 2 << 10}, {"3M", 3 << 20},
	} {
		var b byteSize
		if err := b.Set(tt.in); err != nil || int(b) != tt.want {
			t.Errorf("Set(%q) = %d, %v; want %d, nil", tt.in, int(b), err, tt.want)
		}
	}
	for _, in := range []string{"", "0", "-1", "abc", "1TiB", "KiB", "1.5MiB", "9999999999GiB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, nil; want an error", in, int(b))
		}
	}
}

// TestKubernetesServiceLinks checks that the variables Kubernetes puts into
// every pod for a Service named shard-proxy (enableServiceLinks defaults to
// true, and deploy/ names the proxy's own Service so) are not taken for
// flags: SHARD_PROXY_PORT=tcp://IP:PORT is a service link, not --port.
func TestKubernetesServiceLinks(t *testing.T) {
	links := map[string]string{
		"SHARD_PROXY_SERVICE_HOST":      "10.96.0.12",
		"SHARD_PROXY_SERVICE_PORT":      "80",
		"SHARD_PROXY_SERVICE_PORT_HTTP": "80",
		"SHARD_PROXY_PORT":              "tcp://10.96.0.12:80",
		"SHARD_PROXY_PORT_80_TCP":       "tcp://10.96.0.12:80",
		"SHARD_PROXY_PORT_80_TCP_PROTO": "tcp",
		"SHARD_PROXY_PORT_80_TCP_PORT":  "80",
		"SHARD_PROXY_PORT_80_TCP_ADDR":  "10.96.0.12",
	}
	for _, args := range [][]string{
		{"--shards", "10.0.0.1:8080,10.0.0.2:8080"},
		{"--kube-service", "web"},
	} {
		t.Run(args[0], func(t *testing.T) {
			if o := parseOptions(t, args, links); o.port != "" {
				t.Errorf("--port = %q, want the default (empty): a service link is not a port", o.port)
			}
		})
	}
	// --dns-service needs a port number; the link must not replace or stand in for it.
	if o := parseOptions(t, []string{"--dns-service", "web.default", "--replicas", "3", "--port", "8080"}, links); o.port != "8080" {
		t.Errorf("--port = %q, want 8080", o.port)
	}
}
