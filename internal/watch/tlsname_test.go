package watch

import "testing"

func TestServerName(t *testing.T) {
	p := NameParts{Pod: "web-2", Ordinal: 2, StatefulSet: "web", Service: "web-hl", Namespace: "shop", Domain: "cluster.local"}
	for template, want := range map[string]string{
		"":                              "web-2.web-hl.shop.svc.cluster.local",
		"{statefulset}-{ordinal}.local": "web-2.local",
		"{pod}.{namespace}.example.com": "web-2.shop.example.com",
	} {
		if got := ServerName(template, p); got != want {
			t.Errorf("ServerName(%q) = %q, want %q", template, got, want)
		}
		if template != "" {
			if err := CheckServerName(template); err != nil {
				t.Errorf("CheckServerName(%q): %v", template, err)
			}
		}
	}
	for _, bad := range []string{"{pods}.x", "{pod.x", "", "x}"} {
		if CheckServerName(bad) == nil {
			t.Errorf("CheckServerName(%q) = nil, want an error", bad)
		}
	}
}
