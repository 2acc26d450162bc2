package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Answer is a response read in full.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// String shows the status, the routing headers that are present (X-Shard,
// the proxy's; X-Pod, a test pod's; Retry-After) and the body, for failure
// messages.
func (a Answer) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", a.Status)
	for _, h := range []string{"X-Shard", "X-Pod", "Retry-After"} {
		if v := a.Header.Get(h); v != "" {
			fmt.Fprintf(&b, " %s=%q", h, v)
		}
	}
	fmt.Fprintf(&b, " %s", bytes.TrimSpace(a.Body))
	return b.String()
}

// JSON decodes a JSON object answer; see Decode.
func (a Answer) JSON(t testing.TB) map[string]any {
	t.Helper()
	return Decode[map[string]any](t, a)
}

// Decode checks that a is JSON, by its Content-Type, and decodes its body.
func Decode[T any](t testing.TB, a Answer) T {
	t.Helper()
	if ct := a.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json (body %q)", ct, a.Body)
	}
	var v T
	if err := json.Unmarshal(a.Body, &v); err != nil {
		t.Fatalf("body %q is not the JSON expected: %v", a.Body, err)
	}
	return v
}

// Client returns a client with a connection pool of its own, closed when
// the test ends. It does not ask for compression, so that bodies arrive as
// sent, and gives up on a request after 10s.
func Client(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// NewRequest is http.NewRequest that fails the test on error; a nil body
// sends none.
func NewRequest(t testing.TB, method, url string, body []byte) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// Do sends req with c and reads the answer, failing the test on error.
func Do(t testing.TB, c *http.Client, req *http.Request) Answer {
	t.Helper()
	a, err := Read(c, req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return a
}

// Read sends req with c and reads the answer, for callers that retry or
// run outside the test's goroutine.
func Read(c *http.Client, req *http.Request) (Answer, error) {
	resp, err := c.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Answer{}, fmt.Errorf("reading the body: %w", err)
	}
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}
