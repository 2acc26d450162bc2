package accesslog

import (
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
)

// appendLine appends d's JSON line. Fields that do not apply to the
// request are left out (grpc_status but for gRPC, shard, ordinal and
// upstream before an owner was chosen, error unless the proxy answered,
// trace_id without a trace context, previous without a handoff). It
// allocates nothing and takes no lock: the time is formatted by hand.
func (l *Log) appendLine(b []byte, d *route.Decision, end time.Time) []byte {
	b = append(b, `{"time":"`...)
	b = l.appendTime(b, d.Start)
	b = append(b, `","duration_ms":`...)
	b = appendMillis(b, end.Sub(d.Start))
	b = append(b, `,"proto":"`...)
	b = append(b, protoName(d.Proto)...)
	b = append(b, `","tls":`...)
	b = strconv.AppendBool(b, d.TLS)
	b = appendStr(b, "client", d.Client)
	b = appendBytes(b, "method", d.Method)
	b = appendBytes(b, "path", d.Path)
	if l.cfg.Query && d.Query != nil {
		b = appendBytes(b, "query", d.Query)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(d.Status), 10)
	if code, ok := d.GRPCStatus(); ok {
		b = append(b, `,"grpc_status":`...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	b = l.appendOwner(b, d)
	b = append(b, `,"owner_wait_ms":`...)
	b = appendMillis(b, d.OwnerWait)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, d.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, d.BytesOut, 10)
	if d.TTFB > 0 {
		b = append(b, `,"ttfb_ms":`...)
		b = appendMillis(b, d.TTFB)
	}
	if d.Error != "" {
		b = appendStr(b, "error", d.Error)
	}
	if d.Trace.Known() {
		b = append(b, `,"trace_id":"`...)
		b = d.Trace.AppendTraceID(b)
		b = append(b, '"')
	}
	return append(b, "}\n"...)
}

// appendOwner appends the owner's fields, the rule, the previous owner
// and the key's hash, as far as they are known.
func (l *Log) appendOwner(b []byte, d *route.Decision) []byte {
	if d.Shard != nil {
		b = appendStr(b, "shard", d.Shard.Name)
		b = append(b, `,"ordinal":`...)
		b = strconv.AppendInt(b, int64(d.Shard.Ordinal), 10)
		b = appendStr(b, "upstream", d.Shard.Addr)
	}
	if d.Rule != "" {
		b = appendStr(b, "rule", d.Rule)
	}
	if d.Previous != "" {
		b = appendStr(b, "previous", d.Previous)
	}
	if l.cfg.KeyHash && len(d.Key) > 0 {
		b = append(b, `,"key_hash":"`...)
		b = appendHex16(b, xxhash.Sum64(d.Key))
		b = append(b, '"')
	}
	return b
}

func protoName(p route.Proto) string {
	if p == route.HTTP2 {
		return "HTTP/2"
	}
	return "HTTP/1.1"
}

// secondPrefix is the formatted date and time of one second, up to its
// fraction ("2026-12-07T19:50:01."): made once a second, shared by every
// line of that second without a lock.
type secondPrefix struct {
	unix int64
	text [20]byte
}

// appendTime appends t in UTC as RFC 3339 with microseconds
// (2026-12-07T19:50:01.123456Z): the second's prefix, cached, then the
// microseconds digit by digit.
func (l *Log) appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	p := l.second.Load()
	if p == nil || p.unix != t.Unix() {
		p = &secondPrefix{unix: t.Unix()}
		year, month, day := t.Date()
		hour, minute, sec := t.Clock()
		f := p.text[:0]
		f = appendDigits(f, year, 4)
		f = append(f, '-')
		f = appendDigits(f, int(month), 2)
		f = append(f, '-')
		f = appendDigits(f, day, 2)
		f = append(f, 'T')
		f = appendDigits(f, hour, 2)
		f = append(f, ':')
		f = appendDigits(f, minute, 2)
		f = append(f, ':')
		f = appendDigits(f, sec, 2)
		_ = append(f, '.')
		l.second.Store(p)
	}
	b = append(b, p.text[:]...)
	b = appendDigits(b, t.Nanosecond()/1000, 6)
	return append(b, 'Z')
}

// appendDigits appends n (>= 0) with exactly width digits.
func appendDigits(b []byte, n, width int) []byte {
	var buf [8]byte
	for i := width - 1; i >= 0; i-- {
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, buf[:width]...)
}

// appendMillis appends d in milliseconds with three decimals.
func appendMillis(b []byte, d time.Duration) []byte {
	us := max(d.Microseconds(), 0)
	b = strconv.AppendInt(b, us/1000, 10)
	b = append(b, '.')
	return appendDigits(b, int(us%1000), 3)
}

const hexDigits = "0123456789abcdef"

// plain marks the bytes a JSON string holds as they are: printable ASCII
// but the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendHex16 appends v as 16 lower-case hex digits.
func appendHex16(b []byte, v uint64) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hexDigits[v>>uint(shift)&0xf])
	}
	return b
}

// appendStr appends ,"name":"value" with value escaped for JSON.
func appendStr(b []byte, name, value string) []byte {
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":"`...)
	b = appendEscaped(b, value)
	return append(b, '"')
}

// appendBytes is appendStr for a value held as bytes.
func appendBytes(b []byte, name string, value []byte) []byte {
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":"`...)
	b = appendEscaped(b, unsafe.String(unsafe.SliceData(value), len(value)))
	return append(b, '"')
}

// appendEscaped appends s as the inside of a JSON string: quotes,
// backslashes and control bytes escaped, invalid UTF-8 replaced by
// U+FFFD, so that any path a client sends makes a valid line.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		safe := i
		for safe < len(s) && plain[s[safe]] {
			safe++
		}
		b = append(b, s[i:safe]...) // the usual case: all of it at once
		if i = safe; i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			default:
				b = append(b, `\u00`...)
				b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return b
}
