package keys

import (
	"strings"
	"testing"
)

// BenchmarkKey measures each key rule on a realistic request.
func BenchmarkKey(b *testing.B) {
	body := `{"account":{"id":"12345","name":"` + strings.Repeat("x", 900) + `"},"items":[{"sku":"A-1"}]}`
	req := requestFor("POST", "/v1/acme/accounts/12345/orders?page=2&k=12345",
		map[string]string{"X-Shard-Key": "12345", "Cookie": "session=abc; k=12345", "User-Agent": "bench"}, body)
	for _, rule := range []string{
		"header:X-Shard-Key", "query:k", "cookie:k", "path:/v1/{tenant}/accounts/{key}", "body:account.id",
		"header:X-Missing,header:X-Shard-Key",
	} {
		b.Run(rule, func(b *testing.B) {
			e := NewExtractor(mustRules(b, rule), 0)
			b.ReportAllocs()
			for b.Loop() {
				s := AcquireScratch()
				if k, _, err := e.Key(req, s); err != nil || len(k) != 5 {
					b.Fatalf("key %q, %v", k, err)
				}
				ReleaseScratch(s)
			}
		})
	}
}

// BenchmarkScenarioKey measures the key rules of bench/run.sh's header and
// path scenarios on the requests its wrk script sends, so the two can be
// compared: the path rule must cost about what the header rule does.
func BenchmarkScenarioKey(b *testing.B) {
	for _, sc := range []struct{ rule, uri, header string }{
		{"header:X-Shard-Key", "/", "1234567890"},
		{"path:/accounts/{key}", "/accounts/1234567890", ""},
	} {
		headers := map[string]string{}
		if sc.header != "" {
			headers["X-Shard-Key"] = sc.header
		}
		req := requestFor("GET", sc.uri, headers, "")
		b.Run(sc.rule, func(b *testing.B) {
			e := NewExtractor(mustRules(b, sc.rule), 0)
			b.ReportAllocs()
			for b.Loop() {
				s := AcquireScratch()
				if k, _, err := e.Key(req, s); err != nil || len(k) != 10 {
					b.Fatalf("key %q, %v", k, err)
				}
				ReleaseScratch(s)
			}
		})
	}
}
