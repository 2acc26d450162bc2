package h1

import "errors"

// ErrIncomplete means the buffer ends before the message head (or, for a
// head that would be rejected, before the byte that decides it). The caller
// reads more and parses again; when its buffer limit is reached first it
// answers 431 (request) or 502 (response).
var ErrIncomplete = errors.New("h1: incomplete message head")

// ErrTooManyFields means the head has more than MaxFields field lines. A
// server answers 431 (RFC 6585 §5).
var ErrTooManyFields = errors.New("h1: too many header fields")

// ErrVersion means the start line carries a well-formed HTTP-version other
// than HTTP/1.0 or HTTP/1.1 (HTTP/1.2, HTTP/2.0, HTTP/0.9, ...). A server
// answers 505 (RFC 9110 §15.6.6); a proxy reading a response answers 502.
// It does not satisfy errors.Is(err, ErrMalformed).
var ErrVersion = errors.New("h1: unsupported HTTP version")

// ErrMalformed is what every malformed-message error matches with
// errors.Is. A server answers 400; a proxy reading a response answers 502
// and closes the backend connection.
var ErrMalformed = errors.New("h1: malformed message")

// MalformedError is a rejection with the reason a log or a test wants to
// see. Values are package-level and shared: returning one never allocates,
// and callers must not modify them.
type MalformedError struct {
	Reason string
}

// Error returns the reason, prefixed to say it is a malformed message.
func (e *MalformedError) Error() string { return "h1: malformed message: " + e.Reason }

// Is makes errors.Is(err, ErrMalformed) true for every reason.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

func malformed(reason string) *MalformedError { return &MalformedError{Reason: reason} }

// Line endings and start lines.
var (
	errBareLF        = malformed("bare LF")
	errBareCR        = malformed("bare CR")
	errEmptyLines    = malformed("too many empty lines before request line")
	errMethod        = malformed("invalid method")
	errTargetByte    = malformed("invalid byte in request target")
	errEmptyTarget   = malformed("empty request target")
	errFragment      = malformed("fragment in request target")
	errPercent       = malformed("invalid percent-encoding in path")
	errTarget        = malformed("invalid request target")
	errAsterisk      = malformed("asterisk-form without OPTIONS")
	errConnectTarget = malformed("CONNECT without authority-form target")
	errUserinfo      = malformed("userinfo in target authority")
	errTargetHost    = malformed("invalid host in request target")
	errVersionSyntax = malformed("malformed HTTP version")
	errStatusLine    = malformed("malformed status line")
	errStatus        = malformed("invalid status code")
	errReason        = malformed("invalid byte in reason phrase")

	// Field lines.
	errLeadingWS        = malformed("whitespace between start line and first field")
	errObsFold          = malformed("obs-fold")
	errEmptyName        = malformed("empty field name")
	errFieldNameByte    = malformed("invalid byte in field name")
	errSpaceBeforeColon = malformed("space before colon")
	errNoColon          = malformed("field line without colon")
	errFieldValueByte   = malformed("invalid byte in field value")
	errCLInvalid        = malformed("invalid content-length")
	errCLOverflow       = malformed("content-length overflow")
	errCLConflict       = malformed("conflicting content-length")
	errCLWithTE         = malformed("content-length with transfer-encoding")
	errTE10             = malformed("transfer-encoding in HTTP/1.0")
	errTEInvalid        = malformed("invalid transfer-encoding")
	errTEUnsupported    = malformed("transfer-coding other than chunked in request")
	errChunkedTwice     = malformed("chunked applied more than once")
	errChunkedNotFinal  = malformed("chunked not the final transfer-coding")
	errTrailerFraming   = malformed("framing field named in Trailer")
	errNoHost           = malformed("missing host")
	errDuplicateHost    = malformed("duplicate host")
	errHost             = malformed("invalid host")
	errHostMismatch     = malformed("host does not match target authority")
	errConnectContent   = malformed("content in CONNECT request")

	// Chunked bodies.
	errChunkSize       = malformed("invalid chunk size")
	errChunkSizeLong   = malformed("chunk size too large")
	errChunkExt        = malformed("invalid chunk extension")
	errChunkLineLong   = malformed("chunk size line too long")
	errChunkDataEnd    = malformed("missing CRLF after chunk data")
	errTrailerTooLarge = malformed("trailer section too large")
)
