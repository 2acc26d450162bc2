package header

import (
	"net/http"
	"strings"
)

// Class is what the policy does with a field, by its name.
type Class uint8

// Field classes.
const (
	// EndToEnd fields pass as they are.
	EndToEnd Class = iota
	// HopByHop fields (h1.HopByHopFields) are dropped, in both
	// directions, except the framing an engine relays as it is
	// (Transfer-Encoding on HTTP/1.1) and Upgrade on an upgrade. Fields a
	// Connection field names are hop-by-hop too; the engine that parsed
	// the Connection field knows them.
	HopByHop
	// ForwardedFor: every X-Forwarded-For value is gathered, in order,
	// into one field, with the client's address appended.
	ForwardedFor
	// ForwardedProto and ForwardedHost pass; when absent, the proxy adds
	// its own (an edge proxy in front knows the original better).
	ForwardedProto
	ForwardedHost
	// PreviousOwner fields (X-Shard-Previous, X-Shard-Previous-Address)
	// are the proxy's to set on a request: a client's are dropped, so that
	// no client can point a shard at another pod.
	PreviousOwner
	// ShardName (X-Shard) is the proxy's to set on an answer: a shard's
	// own is replaced.
	ShardName
)

// Classify tells what the policy does with a field named name, matched
// case-insensitively (HTTP/1.1 spells names in any case, HTTP/2 in lower
// case). It does not allocate.
func Classify[T string | []byte](name T) Class {
	switch len(name) {
	case 2:
		if fold(name, "TE") {
			return HopByHop
		}
	case 7:
		if fold(name, "Upgrade") {
			return HopByHop
		}
		if fold(name, Shard) {
			return ShardName
		}
	case 10:
		if fold(name, "Connection") || fold(name, "Keep-Alive") {
			return HopByHop
		}
	case 15:
		if fold(name, "X-Forwarded-For") {
			return ForwardedFor
		}
	case 16:
		if fold(name, "X-Forwarded-Host") {
			return ForwardedHost
		}
		if fold(name, Previous) || fold(name, "Proxy-Connection") {
			return classOf16(name)
		}
	case 17:
		if fold(name, "X-Forwarded-Proto") || fold(name, "Transfer-Encoding") {
			return classOf17(name)
		}
	case 18:
		if fold(name, "Proxy-Authenticate") {
			return HopByHop
		}
	case 19:
		if fold(name, "Proxy-Authorization") {
			return HopByHop
		}
	case 24:
		if fold(name, PreviousAddress) {
			return PreviousOwner
		}
	}
	return EndToEnd
}

func classOf16[T string | []byte](name T) Class {
	if fold(name, Previous) {
		return PreviousOwner
	}
	return HopByHop
}

func classOf17[T string | []byte](name T) Class {
	if fold(name, "X-Forwarded-Proto") {
		return ForwardedProto
	}
	return HopByHop
}

// fold is ASCII case-insensitive equality of a name and a canonical one.
func fold[T string | []byte](name T, s string) bool {
	if len(name) != len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := name[i], s[i]
		if a == b {
			continue
		}
		if l := a | 0x20; l != b|0x20 || l < 'a' || l > 'z' {
			return false
		}
	}
	return true
}

// JoinComma joins two list values with ", "; an empty one adds no member
// (RFC 9110 §5.6.1: recipients skip empty list elements), so an empty a
// gives b and an empty b gives a.
func JoinComma(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + ", " + b
}

// ConnectionMayName tells whether a Connection field can make the field
// name hop-by-hop: any field but Host, Content-Length and
// Transfer-Encoding. Those address and frame the message, and each engine
// handles them itself; dropping one because a Connection token says so
// would send a body without its framing (request smuggling on a pooled
// connection) or a request without its Host.
func ConnectionMayName[T string | []byte](name T) bool {
	return !fold(name, "Host") && !fold(name, "Content-Length") && !fold(name, "Transfer-Encoding")
}

// ListsToken tells whether a comma-separated list value (a Connection
// field's) has name among its elements, matched case-insensitively.
func ListsToken(value, name string) bool {
	for value != "" {
		var elem string
		elem, value, _ = strings.Cut(value, ",")
		if fold(strings.Trim(elem, " \t"), name) {
			return true
		}
	}
	return false
}

// SetPrevious sets the handoff fields on a net/http request header when the
// key moved (name is the previous owner, "" when it did not); a client's own
// are dropped either way.
func SetPrevious(h http.Header, name, addr string) {
	h.Del(Previous)
	h.Del(PreviousAddress)
	if name != "" {
		h.Set(Previous, name)
		if addr != "" {
			h.Set(PreviousAddress, addr)
		}
	}
}

// Lower-case forms, as HTTP/2 spells names.
var (
	// ShardLower is Shard in HTTP/2's lower case.
	ShardLower = strings.ToLower(Shard)
	// PreviousLower and PreviousAddressLower are Previous and
	// PreviousAddress in lower case.
	PreviousLower        = strings.ToLower(Previous)
	PreviousAddressLower = strings.ToLower(PreviousAddress)
)

// IsHopByHop tells whether name is one of h1.HopByHopFields, the fixed
// list (not counting the fields a Connection field names).
func IsHopByHop[T string | []byte](name T) bool { return Classify(name) == HopByHop }

// Classify's HopByHop names are h1.HopByHopFields (policy_test checks).
