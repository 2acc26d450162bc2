// Package h1 is the HTTP/1.1 wire format for a proxy that owns the wire:
// parsers for request and response heads and a streaming scanner for
// chunked bodies.
//
// The parsers follow RFC 9112 and RFC 9110 strictly, in the manner of
// HAProxy's h1.c: one pass over the bytes, flags recording which framing
// fields were seen, and an explicit rejection of every shape that two
// implementations could read differently (bare LF, obs-fold, whitespace
// before a colon, Content-Length together with Transfer-Encoding, ...).
// A proxy that forwards raw field lines must never pass on a message its
// backend might frame differently, so anything ambiguous is an error here
// even where the RFCs would let a lone server be lenient.
//
// Nothing in this package allocates per message. Parsed values are slices
// of the caller's buffer, the Fields slice keeps its capacity between
// parses, and no size is ever taken from the message to make a buffer.
// Parsers re-read the buffer from its start on every call and keep no state
// between calls; the chunked scanner keeps a few integers and is fed bytes
// in any split.
//
// The package holds no mutable state of its own: separate Request,
// Response and Chunked values may be used from separate goroutines freely.
//
// Errors: ErrIncomplete asks for more bytes, ErrTooManyFields and
// ErrVersion name limits the caller answers with 431 and 505, and every
// other rejection satisfies errors.Is(err, ErrMalformed) and carries a
// reason (see MalformedError).
package h1
