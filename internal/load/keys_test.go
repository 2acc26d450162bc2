package load

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKeysRejects(t *testing.T) {
	for _, spec := range []string{"zipf:1:100", "zipf:0.99:100", "zipf:-2:100", "zipf:NaN:100", "zipf:1.1", "uniform:0",
		"uniform:x", "seq:", "nope:3", "", "file:", "file:/does/not/exist"} {
		if _, err := ParseKeys(spec, 1); err == nil {
			t.Errorf("ParseKeys(%q) = nil error; want one", spec)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseKeys(%q): %q is more than one line", spec, err)
		}
	}
}

func draw(t *testing.T, ks KeySource, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = string(ks.Append(nil, ks.Next()))
	}
	return out
}

func TestKeySources(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	if err := os.WriteFile(path, []byte("alice\n\n bob \ncarol/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	seq, _ := ParseKeys("seq:3", 1)
	if got := strings.Join(draw(t, seq, 7), ","); got != "0,1,2,0,1,2,0" {
		t.Errorf("seq:3 drew %s; want 0,1,2,0,1,2,0", got)
	}
	file, err := ParseKeys("file:"+path, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(draw(t, file, 4), ","); got != "alice,bob,carol/x,alice" {
		t.Errorf("file drew %s; want alice,bob,carol/x,alice", got)
	}
	for _, spec := range []string{"uniform:1000", "zipf:1.3:1000"} {
		a, _ := ParseKeys(spec, 42)
		b, _ := ParseKeys(spec, 42)
		if x, y := draw(t, a, 100), draw(t, b, 100); strings.Join(x, ",") != strings.Join(y, ",") {
			t.Errorf("%s with seed 42 drew two sequences", spec)
		}
	}
}

func TestTemplates(t *testing.T) {
	tg, err := NewTarget("http://h:81/a/{key}/b?k={key}&x=1", "POST", []string{"X-Shard-Key: {key}", "Host: example"}, `{"id":"{key}"}`)
	if err != nil {
		t.Fatal(err)
	}
	got := string(tg.appendHTTP1(nil, []byte("a b")))
	want := "POST /a/a%20b/b?k=a+b&x=1 HTTP/1.1\r\nHost: example\r\nUser-Agent: shard-proxy-load\r\n" +
		"X-Shard-Key: a b\r\nContent-Length: 12\r\n\r\n{\"id\":\"a b\"}"
	if got != want || tg.Addr != "h:81" {
		t.Errorf("request for key \"a b\":\n%q\nwant\n%q (addr %s)", got, want, tg.Addr)
	}
	if tg, err := NewTarget("localhost:8080/a/{key}", "", nil, ""); err != nil || tg.Addr != "localhost:8080" || tg.URL != "http://localhost:8080/a/{key}" {
		t.Errorf("NewTarget without a scheme: %+v, %v; want http://localhost:8080/a/{key}", tg, err)
	}
	for _, bad := range []string{"ftp://h/x", "http://{key}/x", "/x", "http://"} {
		if _, err := NewTarget(bad, "GET", nil, ""); err == nil {
			t.Errorf("NewTarget(%q) = nil error; want one", bad)
		}
	}
}
