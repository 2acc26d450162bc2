package load

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// keyMark is what URL, header values and the body say where the key goes.
const keyMark = "{key}"

// escaping is how a key is written into one part of a request.
type escaping uint8

const (
	rawKey   escaping = iota // header values and the body: as it is
	pathKey                  // the URL path: percent-encoded as a path segment
	queryKey                 // the URL query: percent-encoded as a query value
)

// template is text with {key} marks: literal parts and key parts.
type template struct {
	parts []part
}

type part struct {
	lit string
	key bool
	esc escaping
}

func parseTemplate(s string, esc escaping) template {
	var t template
	for {
		i := strings.Index(s, keyMark)
		if i < 0 {
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: s[:i]})
		}
		t.parts = append(t.parts, part{key: true, esc: esc})
		s = s[i+len(keyMark):]
	}
	if s != "" {
		t.parts = append(t.parts, part{lit: s})
	}
	return t
}

// hasKey reports whether the template holds a {key} mark.
func (t template) hasKey() bool {
	for _, p := range t.parts {
		if p.key {
			return true
		}
	}
	return false
}

// appendTo appends the template with key in its marks to dst.
func (t template) appendTo(dst, key []byte) []byte {
	for _, p := range t.parts {
		if !p.key {
			dst = append(dst, p.lit...)
			continue
		}
		dst = appendKey(dst, key, p.esc)
	}
	return dst
}

// size is the length of the template with key in its marks.
func (t template) size(key []byte) int {
	n := 0
	for _, p := range t.parts {
		if p.key {
			n += len(key)
		} else {
			n += len(p.lit)
		}
	}
	return n
}

func appendKey(dst, key []byte, esc escaping) []byte {
	if esc == rawKey || unreserved(key) {
		return append(dst, key...)
	}
	if esc == pathKey {
		return append(dst, url.PathEscape(string(key))...)
	}
	return append(dst, url.QueryEscape(string(key))...)
}

// unreserved reports whether key needs no escaping anywhere in a URL
// (RFC 3986 unreserved characters), as every generated key does.
func unreserved(key []byte) bool {
	for _, c := range key {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// Target is where the requests go, and what they are.
type Target struct {
	// URL is the URL as given, with its {key} marks.
	URL string
	// Scheme is http or https.
	Scheme string
	// Addr is host:port to connect to; Host is the Host header's value.
	Addr, Host string
	// Method is the request method.
	Method string

	path    template
	headers []headerTemplate
	body    template
}

type headerTemplate struct {
	name  string
	value template
}

// NewTarget parses a URL with {key} marks in its path or query, -H
// "Name: value" headers whose values may hold {key}, and a body that may
// hold {key}.
func NewTarget(rawURL, method string, headers []string, body string) (*Target, error) {
	if !strings.Contains(rawURL, "://") && !strings.HasPrefix(rawURL, "/") {
		rawURL = "http://" + rawURL // as curl takes localhost:8080/x
	}
	scheme, rest, _ := strings.Cut(rawURL, "://")
	if scheme != "http" && scheme != "https" {
		return nil, fmt.Errorf("URL %q: want http://host[:port]/path, e.g. http://127.0.0.1:8080/accounts/{key}", rawURL)
	}
	host, reqTarget := rest, "/"
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		host, reqTarget = rest[:i], rest[i:]
		if reqTarget[0] == '?' {
			reqTarget = "/" + reqTarget
		}
	}
	addr, err := hostAddr(scheme, host)
	if err != nil {
		return nil, fmt.Errorf("URL %q: %v", rawURL, err)
	}
	if method == "" {
		method = "GET"
	}
	if !validToken(method) {
		return nil, fmt.Errorf("-X %q: want a method such as GET or POST", method)
	}
	t := &Target{URL: rawURL, Scheme: scheme, Addr: addr, Host: host, Method: method, body: parseTemplate(body, rawKey)}
	p, q, _ := strings.Cut(reqTarget, "?")
	t.path = parseTemplate(p, pathKey)
	if strings.Contains(reqTarget, "?") {
		t.path.parts = append(t.path.parts, part{lit: "?"})
		t.path.parts = append(t.path.parts, parseTemplate(q, queryKey).parts...)
	}
	for _, h := range headers {
		if err := t.addHeader(h); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func hostAddr(scheme, host string) (string, error) {
	if host == "" || strings.Contains(host, keyMark) || strings.ContainsAny(host, "@ ") {
		return "", fmt.Errorf("want a host[:port] without {key} or user info")
	}
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host, nil
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port), nil
}

func (t *Target) addHeader(h string) error {
	name, value, ok := strings.Cut(h, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || !validToken(name) || strings.ContainsAny(value, "\r\n") {
		return fmt.Errorf("-H %q: want 'Name: value'", h)
	}
	switch strings.ToLower(name) {
	case "host":
		t.Host = value
		return nil
	case "content-length", "transfer-encoding", "connection":
		return fmt.Errorf("-H %q: the load generator sets %s itself", h, name)
	}
	t.headers = append(t.headers, headerTemplate{name: name, value: parseTemplate(value, rawKey)})
	return nil
}

// validToken reports whether s is an HTTP token (RFC 9110), as method and
// field names must be.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// KeyInRequest reports whether any part of the request holds {key}.
func (t *Target) KeyInRequest() bool {
	if t.path.hasKey() || t.body.hasKey() {
		return true
	}
	for _, h := range t.headers {
		if h.value.hasKey() {
			return true
		}
	}
	return false
}

// hasBody reports whether requests carry a body (or a Content-Length: 0,
// as methods that expect one do).
func (t *Target) hasBody() bool {
	switch t.Method {
	case "POST", "PUT", "PATCH":
		return true
	}
	return len(t.body.parts) > 0
}

// appendHTTP1 appends the whole HTTP/1.1 request for key to dst.
func (t *Target) appendHTTP1(dst, key []byte) []byte {
	dst = append(dst, t.Method...)
	dst = append(dst, ' ')
	dst = t.path.appendTo(dst, key)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, t.Host...)
	dst = append(dst, "\r\nUser-Agent: shard-proxy-load\r\n"...)
	for _, h := range t.headers {
		dst = append(dst, h.name...)
		dst = append(dst, ": "...)
		dst = h.value.appendTo(dst, key)
		dst = append(dst, "\r\n"...)
	}
	if t.hasBody() {
		dst = append(dst, "Content-Length: "...)
		dst = appendInt(dst, t.body.size(key))
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	return t.body.appendTo(dst, key)
}

func appendInt(dst []byte, n int) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}
