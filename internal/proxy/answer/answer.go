// Package answer is the data plane's error table: every failure the proxy
// answers itself, with its status, its JSON body and its gRPC status, shared
// by every front end (HTTP/1.1, HTTP/2, gRPC) and by broadcast. Sentinels
// are *Error values; wrap them with %w to add context, and For still finds
// them.
package answer

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
)

// Error is a failure the proxy answers itself. It carries its answer: the
// status, whether Retry-After applies, and the message of the JSON body.
// The package's sentinels are *Error values; wrap them with %w to add
// context, and For still finds them.
type Error struct {
	Status int
	// RetryAfter asks the client to retry in a second (Retry-After: 1).
	RetryAfter bool
	msg        string
}

func (e *Error) Error() string { return e.msg }

// The proxy's own answers (the data plane's error table), shared by every front end and by
// broadcast. errors.Is matches them through any wrapping.
var (
	ErrNoKey            = &Error{Status: http.StatusBadRequest, msg: "no shard key"}
	ErrAmbiguousKey     = &Error{Status: http.StatusBadRequest, msg: "ambiguous shard key"}
	ErrInvalidKey       = &Error{Status: http.StatusBadRequest, msg: "invalid shard key"}
	ErrBadBody          = &Error{Status: http.StatusBadRequest, msg: "request body is not valid JSON"}
	ErrBodyTooDeep      = &Error{Status: http.StatusBadRequest, msg: "request body nested too deep"}
	ErrBadRequest       = &Error{Status: http.StatusBadRequest, msg: "malformed request"}
	ErrBodyTooLarge     = &Error{Status: http.StatusRequestEntityTooLarge, msg: "request body too large"}
	ErrHeaderTooLarge   = &Error{Status: http.StatusRequestHeaderFieldsTooLarge, msg: "request headers too large"}
	ErrNoShards         = &Error{Status: http.StatusServiceUnavailable, msg: "no shards"}
	ErrShardNotReady    = &Error{Status: http.StatusServiceUnavailable, RetryAfter: true, msg: "shard not ready"}
	ErrShardBusy        = &Error{Status: http.StatusServiceUnavailable, RetryAfter: true, msg: "shard connection limit reached"}
	ErrShardDown        = &Error{Status: http.StatusBadGateway, msg: "shard unreachable"}
	ErrBadResponse      = &Error{Status: http.StatusBadGateway, msg: "invalid response from shard"}
	ErrHeaderTimeout    = &Error{Status: http.StatusRequestTimeout, msg: "request header timeout"}
	ErrMethodNotAllowed = &Error{Status: http.StatusMethodNotAllowed, msg: "method not supported by the proxy"}
	ErrVersion          = &Error{Status: http.StatusHTTPVersionNotSupported, msg: "HTTP version not supported"}
	ErrShardTimeout     = &Error{Status: http.StatusGatewayTimeout, msg: "shard timeout"}
	// ErrOwnerMoved ends a long-lived stream whose key now belongs to
	// another shard: the client reconnects, and lands on the new owner.
	ErrOwnerMoved = &Error{Status: http.StatusServiceUnavailable, msg: "shard owner changed"}
	// ErrBodyTimeout: the client stopped sending its request body.
	ErrBodyTimeout = &Error{Status: http.StatusRequestTimeout, msg: "request body timeout"}
	errUnknown     = &Error{Status: http.StatusBadGateway, msg: "shard unreachable"}
)

// ErrClientGone is no answer: the client closed or reset its connection
// (or its stream) first. It is counted as StatusClientGone.
var ErrClientGone = errors.New("client went away")

// StatusClientGone is counted for a request whose client left before its
// answer, as nginx counts it.
const StatusClientGone = 499

// KeyError adds to a key failure (ErrNoKey, ErrAmbiguousKey, ErrBadBody)
// the rule that failed, or the rules tried.
func KeyError(err *Error, rule string, tried []string) error {
	return &keyError{err: err, rule: rule, tried: tried}
}

// keyError adds to a key failure the rule that failed (ErrBadBody) or the
// rules tried (ErrNoKey).
type keyError struct {
	err   *Error
	rule  string
	tried []string
}

func (e *keyError) Error() string { return e.err.Error() }
func (e *keyError) Unwrap() error { return e.err }

// limitError adds the limit that was exceeded.
type limitError struct {
	err   *Error
	limit int
}

func (e *limitError) Error() string { return e.err.Error() }
func (e *limitError) Unwrap() error { return e.err }

// BodyTooLarge is ErrBodyTooLarge with the limit that was exceeded.
func BodyTooLarge(limit int) error { return &limitError{err: ErrBodyTooLarge, limit: limit} }

// ErrorBody is the JSON body of every error the proxy answers itself.
type ErrorBody struct {
	Error string   `json:"error"`
	Shard string   `json:"shard,omitempty"`
	Tried []string `json:"tried,omitempty"`
	Rule  string   `json:"rule,omitempty"`
	Limit int      `json:"limit,omitempty"`
}

// Answer is what the proxy sends for an error: the one mapping from errors
// to status, headers and body, used by every front end and by broadcast.
type Answer struct {
	Status     int
	RetryAfter bool
	Body       ErrorBody
}

// OfShard wraps err with the shard it concerns, which For then names when
// its caller does not (an owner that is not ready).
func OfShard(err error, shard string) error { return &shardError{err: err, shard: shard} }

type shardError struct {
	err   error
	shard string
}

func (e *shardError) Error() string { return e.err.Error() }
func (e *shardError) Unwrap() error { return e.err }

// For maps err to its answer. shard names the owner when one was
// chosen ("" otherwise, or the shard OfShard wrapped in err); it is
// reported in the body and, by the caller, in X-Shard. An error that is
// not the proxy's own is a 502.
func For(err error, shard string) Answer {
	var se *shardError
	if shard == "" && errors.As(err, &se) {
		shard = se.shard
	}
	var pe *Error
	if !errors.As(err, &pe) {
		pe = errUnknown
	}
	a := Answer{Status: pe.Status, RetryAfter: pe.RetryAfter && shard != "", Body: ErrorBody{Error: pe.msg, Shard: shard}}
	var ke *keyError
	if errors.As(err, &ke) {
		a.Body.Rule, a.Body.Tried = ke.rule, ke.tried
	}
	var le *limitError
	if errors.As(err, &le) {
		a.Body.Limit = le.limit
	}
	return a
}

// JSON is the answer's body, newline-terminated.
func (a Answer) JSON() []byte {
	b, _ := json.Marshal(a.Body)
	return append(b, '\n')
}

// Write writes the answer to a net/http response (the admin plane).
func (a Answer) Write(w http.ResponseWriter) { a.WriteTo(w, false) }

// WriteTo writes the answer to a net/http response: as JSON, or for a
// gRPC call as a trailers-only answer.
func (a Answer) WriteTo(w http.ResponseWriter, grpc bool) {
	h := w.Header()
	for _, f := range a.Fields(nil, grpc) {
		h.Set(f.Name, f.Value)
	}
	if grpc {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(a.Status)
	_, _ = w.Write(a.JSON())
}

// Field is one header field of the proxy's own answer, named as HTTP/2
// spells it (lower case; net/http canonicalizes it).
type Field struct{ Name, Value string }

// Fields appends the answer's header fields but its status and length:
// for a gRPC call those of a trailers-only answer (content-type,
// grpc-status, grpc-message; its status is 200), else the JSON body's
// content-type and Retry-After; then X-Shard when an owner was chosen.
// Every front end renders the proxy's answers from them.
func (a Answer) Fields(dst []Field, grpc bool) []Field {
	if grpc {
		dst = append(dst, Field{"content-type", "application/grpc"})
		dst = a.Trailers(dst)
	} else {
		dst = append(dst, Field{"content-type", "application/json"})
		if a.RetryAfter {
			dst = append(dst, Field{"retry-after", "1"})
		}
	}
	if a.Body.Shard != "" {
		dst = append(dst, Field{header.ShardLower, a.Body.Shard})
	}
	return dst
}

// Trailers appends the grpc-status and grpc-message fields that end a gRPC
// call with the answer's status: in a trailers-only answer, or in the
// trailers of a call whose answer had begun.
func (a Answer) Trailers(dst []Field) []Field {
	return append(dst, Field{"grpc-status", strconv.Itoa(a.GRPCCode())}, Field{"grpc-message", a.GRPCMessage()})
}
