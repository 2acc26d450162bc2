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
