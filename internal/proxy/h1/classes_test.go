package h1

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
)

// headRejects are the head shapes we reject and net/http accepts, common
// to requests and responses. Each is a place where RFC 9112 lets a
// recipient reject, and where a proxy that forwards raw lines must, since
// the next hop may read the shape differently.
var headRejects = []diffClass{
	{name: "bare LF", ground: "RFC 9112 §2.2: a recipient MAY recognize a bare LF as a line terminator; MAY, so rejecting is allowed",
		errs: []error{errBareLF}, match: func(c *diffCtx) bool { return c.raw.bareLF }},
	{name: "obs-fold", ground: "RFC 9112 §5.2: a server MUST either reject obs-fold with 400 or replace it; a proxy MAY answer 502 for a response",
		errs: []error{errObsFold}, match: func(c *diffCtx) bool { return c.raw.fold }},
	{name: "version", ground: "RFC 9110 §2.5, §6.2: HTTP/1.2+ SHOULD be processed as 1.1 but MAY be refused (505); we serve only 1.0 and 1.1 (documented deviation from the SHOULD)",
		errs: []error{ErrVersion}, match: func(c *diffCtx) bool { return c.version[0] != 1 || c.version[1] > 1 }},
	{name: "transfer-encoding in HTTP/1.0", ground: "RFC 9112 §6.1: a recipient MUST treat the framing of an HTTP/1.0 message with Transfer-Encoding as faulty (net/http ignores the field)",
		errs: []error{errTE10}, match: func(c *diffCtx) bool { return c.version == [2]int{1, 0} && c.raw.has("Transfer-Encoding") }},
	{name: "content-length with transfer-encoding", ground: "RFC 9112 §6.1: a server MAY reject it; §6.3: it ought to be handled as an error (smuggling)",
		errs: []error{errCLWithTE}, match: func(c *diffCtx) bool { return c.raw.has("Content-Length") && c.raw.has("Transfer-Encoding") }},
	{name: "framing field in Trailer", ground: "RFC 9110 §6.5.1: framing fields cannot be trailers (net/http rejects this only with chunked)",
		errs: []error{errTrailerFraming}, match: func(c *diffCtx) bool {
			return c.raw.listHas("Trailer", "content-length", "transfer-encoding", "trailer")
		}},
	{name: "too many fields", ground: "RFC 9110 §5.4, RFC 6585 §5: a server may limit the header section (431)",
		errs: []error{ErrTooManyFields}, match: func(c *diffCtx) bool { return len(c.raw.fields) > MaxFields }},
}

// bodyRejects are chunked-body shapes we reject and net/http accepts.
var bodyRejects = []diffClass{
	{name: "chunk line grammar", ground: "RFC 9112 §7.1, §7.1.1: chunk-size [ chunk-ext ] CRLF; net/http trims trailing whitespace and ignores extensions unparsed",
		errs: []error{errChunkExt}, match: func(c *diffCtx) bool {
			for _, l := range c.chunks.lines {
				if !chunkLineRE.MatchString(l) {
					return true
				}
			}
			return false
		}},
	{name: "trailer line grammar", ground: "RFC 9112 §7.1.2: trailer fields are field lines (§5): no obs-fold (§5.2), no whitespace before the colon (§5.1), CRLF (§2.2)",
		errs: []error{errObsFold, errSpaceBeforeColon, errBareLF}, match: func(c *diffCtx) bool {
			t := splitHead(append([]byte("start\r\n"), c.chunks.trailer...))
			for _, l := range t.lines[1:] {
				if !fieldLineRE.Match(l) {
					return true
				}
			}
			return t.bareLF
		}},
}

// bodyAccepts are chunked-body shapes we accept and net/http rejects.
var bodyAccepts = []diffClass{
	{name: "BWS before chunk extension", ground: "RFC 9112 §7.1.1 puts BWS around ';' and '=', and RFC 9110 §5.6.3 says a recipient MUST parse BWS; net/http rejects \"5 ;x\". Forwarded raw, the worst a strict backend does is reject it: no framing disagreement",
		match: func(c *diffCtx) bool {
			for _, l := range c.chunks.lines {
				if bwsChunkExtRE.MatchString(l) {
					return true
				}
			}
			return false
		}},
	{name: "net/http chunk overhead heuristic", ground: "net/http refuses a body whose framing exceeds 16 KiB beyond 16 bytes per chunk plus twice the data; a heuristic against slow senders, not a framing rule. Our bounds are per line, and pacing is the engine's (deadlines)",
		match: func(c *diffCtx) bool { return c.chunks.excess }},
	{name: "net/http trailer window", ground: "net/http requires the trailer section to end within its 4 KiB read buffer (its comment calls this a hack); our explicit bound is MaxTrailer",
		match: func(c *diffCtx) bool {
			t := c.chunks.trailer
			i := bytes.Index(t, []byte("\r\n\r\n"))
			return t != nil && !bytes.HasPrefix(t, []byte("\r\n")) && (i < 0 || i+4 > 4096)
		}},
}

// contentLengthList is the one head shape we accept and net/http rejects.
var contentLengthList = diffClass{name: "content-length list",
	ground: "RFC 9110 §8.6: a recipient MAY replace a list of identical values with one; FlagContentLengthRepeated tells the engine to forward a single canonical line, so the next hop never sees the list",
	match: func(c *diffCtx) bool {
		for _, v := range c.raw.values("Content-Length") {
			if strings.Contains(v, ",") {
				return true
			}
		}
		return false
	}}

// requestRejects are request shapes we reject and net/http accepts. The
// checks of net/http's server after ReadRequest (missing or invalid Host,
// invalid names, unsupported major version) are applied on its side, so
// only what its server also accepts lands here.
var requestRejects = append(append([]diffClass{
	{name: "leading empty lines", ground: "RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line; we ignore up to maxEmptyLines",
		errs: []error{errEmptyLines}, match: func(c *diffCtx) bool { return c.emptyLines > maxEmptyLines }},
	{name: "HTTP/2 prior knowledge", ground: "RFC 9113 §3.3: the connection preface is HTTP/2, which this package does not speak (net/http hands it to a handler)",
		errs: []error{ErrVersion}, match: func(c *diffCtx) bool { return c.method == "PRI" && c.target == "*" }},
	{name: "empty target", ground: "RFC 9112 §3.2: every form of request-target is non-empty (net/http accepts \"CONNECT  HTTP/1.1\")",
		errs: []error{errEmptyTarget}, match: func(c *diffCtx) bool { return c.target == "" }},
	{name: "fragment in target", ground: "RFC 9112 §3.2: request-target has no fragment; RFC 3986 §3.5; HAProxy rejects it since CVE-2023-45539",
		errs: []error{errFragment}, match: func(c *diffCtx) bool { return strings.Contains(c.target, "#") }},
	{name: "non-ASCII target", ground: "RFC 3986 §2: a URI is ASCII; RFC 9112 §3.2",
		errs: []error{errTargetByte}, match: func(c *diffCtx) bool { return strings.ContainsFunc(c.target, func(r rune) bool { return r >= 0x80 }) }},
	{name: "asterisk-form without OPTIONS", ground: "RFC 9112 §3.2.4: asterisk-form is only used for OPTIONS",
		errs: []error{errAsterisk, errConnectTarget}, match: func(c *diffCtx) bool { return c.target == "*" && c.method != "OPTIONS" }},
	{name: "CONNECT without authority-form", ground: "RFC 9112 §3.2.3: CONNECT uses authority-form; RFC 9110 §9.3.6: the port is required",
		errs: []error{errConnectTarget}, match: func(c *diffCtx) bool {
			_, ok := strictHostPort(c.target, true)
			return c.method == "CONNECT" && !ok
		}},
	{name: "absolute-URI without authority", ground: "RFC 9110 §4.2: http(s) URIs have an authority; other schemes are not for a reverse proxy",
		errs: []error{errTarget}, match: func(c *diffCtx) bool {
			return c.method != "CONNECT" && !strings.HasPrefix(c.target, "/") && c.target != "*" && !schemeRE.MatchString(c.target)
		}},
	{name: "userinfo in target", ground: "RFC 9110 §4.2.4: a recipient SHOULD treat userinfo as an error",
		errs: []error{errUserinfo}, match: func(c *diffCtx) bool { return strings.Contains(c.authority(), "@") }},
	{name: "invalid target host", ground: "RFC 3986 §3.2.2, RFC 9110 §4.2.1 (empty host invalid); we also refuse pct-encoded hosts and IPv6 zones, which a router would read one way and a resolver another",
		errs: []error{errTargetHost}, match: func(c *diffCtx) bool {
			h, ok := strictHostPort(c.authority(), false)
			return schemeRE.MatchString(c.target) && (!ok || h == "")
		}},
	{name: "invalid Host", ground: "RFC 9112 §3.2: a server MUST answer 400 to an invalid Host; RFC 3986 §3.2.2 (net/http's server only checks the byte set)",
		errs: []error{errHost}, match: func(c *diffCtx) bool {
			for _, v := range c.raw.values("Host") {
				if _, ok := strictHostPort(v, false); !ok {
					return true
				}
			}
			return false
		}},
	{name: "Host differs from target authority", ground: "RFC 9112 §3.2.2: a client MUST send the authority as Host; two hosts in one request confuse routing",
		errs: []error{errHostMismatch}, match: func(c *diffCtx) bool {
			hs := c.raw.values("Host")
			return schemeRE.MatchString(c.target) && len(hs) == 1 && !strings.EqualFold(hs[0], c.authority())
		}},
	{name: "CONNECT without Host", ground: "RFC 9112 §3.2: every HTTP/1.1 request MUST carry Host (net/http's server exempts CONNECT)",
		errs: []error{errNoHost}, match: func(c *diffCtx) bool { return c.method == "CONNECT" && !c.raw.has("Host") }},
	{name: "content in CONNECT", ground: "RFC 9110 §9.3.6: a CONNECT request has no content; bytes after the head belong to the tunnel",
		errs: []error{errConnectContent}, match: func(c *diffCtx) bool {
			n, _ := strconv.ParseInt(strings.Join(c.raw.values("Content-Length"), ""), 10, 64)
			return c.method == "CONNECT" && (c.raw.has("Transfer-Encoding") || n > 0)
		}},
}, headRejects...), bodyRejects...)

// responseRejects are response shapes we reject and net/http accepts.
var responseRejects = append(append([]diffClass{
	{name: "space in field name", ground: "RFC 9110 §5.1: a field name is a token; RFC 9112 §5.1: a proxy MUST remove whitespace before the colon before forwarding; we forward raw lines, so we answer 502 instead (net/http accepts any SP in a response field name)",
		errs: []error{errSpaceBeforeColon}, match: func(c *diffCtx) bool {
			return c.rawFieldMatches(func(f rawField) bool { return strings.Contains(f.name, " ") })
		}},
	{name: "status line without SP before empty reason", ground: "RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]",
		errs: []error{errStatusLine}, match: func(c *diffCtx) bool { return noReasonSPRE.Match(c.raw.first()) }},
	{name: "extra SP in status line", ground: "RFC 9112 §4: exactly one SP between the parts",
		errs: []error{errStatus}, match: func(c *diffCtx) bool { return extraSPRE.Match(c.raw.first()) }},
	{name: "status outside 100-599", ground: "RFC 9110 §15: valid status codes are 100 to 599",
		errs: []error{errStatus}, match: func(c *diffCtx) bool { return c.status < 100 || c.status > 599 }},
	{name: "CTL in reason phrase", ground: "RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )",
		errs: []error{errReason, errBareCR}, match: func(c *diffCtx) bool {
			return reasonCTLRE.Match(c.raw.first())
		}},
}, headRejects...), bodyRejects...)

// responseAccepts are response shapes we accept and net/http rejects.
var responseAccepts = append([]diffClass{contentLengthList,
	{name: "transfer codings other than a lone chunked", ground: "RFC 9112 §6.3: a response whose final coding is not chunked is delimited by close, and one ending in chunked is chunked; net/http supports only \"chunked\" alone",
		match: func(c *diffCtx) bool {
			te := c.raw.values("Transfer-Encoding")
			return len(te) > 1 || len(te) == 1 && !strings.EqualFold(te[0], "chunked")
		}},
}, bodyAccepts...)

var requestAccepts = append([]diffClass{contentLengthList}, bodyAccepts...)

func (c *diffCtx) rawFieldMatches(pred func(rawField) bool) bool {
	for _, f := range c.raw.fields {
		if pred(f) {
			return true
		}
	}
	return false
}

// authority is the authority of an absolute-form target, "" otherwise.
func (c *diffCtx) authority() string {
	loc := schemeRE.FindStringIndex(c.target)
	if loc == nil {
		return ""
	}
	rest := c.target[loc[1]:]
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

var (
	bwsChunkExtRE = regexp.MustCompile(`^[0-9A-Fa-f]+[ \t]+;`)
	noReasonSPRE  = regexp.MustCompile(`^HTTP/\d\.\d \d{3}$`)
	extraSPRE     = regexp.MustCompile(`^HTTP/\d\.\d  `)
	reasonCTLRE   = regexp.MustCompile(`^HTTP/\d\.\d \d{3} .*[\x00-\x08\x0a-\x1f\x7f]`)
)
