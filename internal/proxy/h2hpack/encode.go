package h2hpack

import "golang.org/x/net/http2/hpack"

// The relay's HPACK encoder (RFC 7541). It never adds to the dynamic
// table: a field is the static table's entry when it matches whole, and
// otherwise a literal without indexing, its name from the static table
// when there, its strings raw. Encoding is then a copy, with no table to
// search or evict from, and the peer's decoder has no table to maintain.
// HAProxy encodes the same way. A proxy forwards mostly fields it did not
// choose, many of which (keys, deadlines, ids) never repeat, so indexing
// would buy little for what it costs on both sides.

// hpackStaticName is the first static table index of each name.
var hpackStaticName = map[string]uint64{
	":authority": 1, ":method": 2, ":path": 4, ":scheme": 6, ":status": 8,
	"accept-charset": 15, "accept-encoding": 16, "accept-language": 17, "accept-ranges": 18,
	"accept": 19, "access-control-allow-origin": 20, "age": 21, "allow": 22, "authorization": 23,
	"cache-control": 24, "content-disposition": 25, "content-encoding": 26, "content-language": 27,
	"content-length": 28, "content-location": 29, "content-range": 30, "content-type": 31,
	"cookie": 32, "date": 33, "etag": 34, "expect": 35, "expires": 36, "from": 37, "host": 38,
	"if-match": 39, "if-modified-since": 40, "if-none-match": 41, "if-range": 42,
	"if-unmodified-since": 43, "last-modified": 44, "link": 45, "location": 46, "max-forwards": 47,
	"proxy-authenticate": 48, "proxy-authorization": 49, "range": 50, "referer": 51, "refresh": 52,
	"retry-after": 53, "server": 54, "set-cookie": 55, "strict-transport-security": 56,
	"transfer-encoding": 57, "user-agent": 58, "vary": 59, "via": 60, "www-authenticate": 61,
}

// hpackStaticField is the static table's index of a whole field.
func hpackStaticField(f hpack.HeaderField) uint64 {
	switch f.Name {
	case ":method":
		switch f.Value {
		case "GET":
			return 2
		case "POST":
			return 3
		}
	case ":path":
		switch f.Value {
		case "/":
			return 4
		case "/index.html":
			return 5
		}
	case ":scheme":
		switch f.Value {
		case "http":
			return 6
		case "https":
			return 7
		}
	case ":status":
		switch f.Value {
		case "200":
			return 8
		case "204":
			return 9
		case "206":
			return 10
		case "304":
			return 11
		case "400":
			return 12
		case "404":
			return 13
		case "500":
			return 14
		}
	case "accept-encoding":
		if f.Value == "gzip, deflate" {
			return 16
		}
	}
	return 0
}

// appendHpackInt appends i with an n-bit prefix whose high bits are first
// (RFC 7541 §5.1).
func appendHpackInt(dst []byte, first byte, n uint, i uint64) []byte {
	limit := uint64(1)<<n - 1
	if i < limit {
		return append(dst, first|byte(i))
	}
	dst = append(dst, first|byte(limit))
	for i -= limit; i >= 128; i >>= 7 {
		dst = append(dst, byte(i&0x7f|0x80))
	}
	return append(dst, byte(i))
}

// appendHpackString appends s raw (no Huffman coding).
func appendHpackString(dst []byte, s string) []byte {
	return append(appendHpackInt(dst, 0, 7, uint64(len(s))), s...)
}

// appendHpackField appends one field: indexed when the static table has
// it whole, else a literal without indexing (never indexed when the field
// is marked sensitive).
func AppendField(dst []byte, f hpack.HeaderField) []byte {
	if i := hpackStaticField(f); i != 0 {
		return appendHpackInt(dst, 0x80, 7, i)
	}
	first := byte(0x00)
	if f.Sensitive {
		first = 0x10
	}
	if i, ok := hpackStaticName[f.Name]; ok {
		dst = appendHpackInt(dst, first, 4, i)
	} else {
		dst = appendHpackString(append(dst, first), f.Name)
	}
	return appendHpackString(dst, f.Value)
}
