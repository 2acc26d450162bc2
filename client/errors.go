package client

import (
	"errors"
	"fmt"
	"strings"
)

// The Client's errors. Match them with errors.Is; ShardError and KeyError
// carry the shard or the rule (errors.As).
var (
	// ErrNoTopology: New got no topology from the admin port within its
	// timeout (the cause is wrapped too).
	ErrNoTopology = errors.New("client: no topology")
	// ErrUnauthorized: the admin port refused the token (401).
	ErrUnauthorized = errors.New("client: admin token refused")
	// ErrUnknownRing: the proxy routes by a ring algorithm this client does
	// not know; it refuses to guess an owner.
	ErrUnknownRing = errors.New("client: unknown ring")
	// ErrFingerprintMismatch: the client's ring over the proxy's shards has
	// another fingerprint than the proxy's: they would disagree on owners.
	ErrFingerprintMismatch = errors.New("client: ring fingerprint differs from the proxy's")
	// ErrNoShards: the ring has no shards (N = 0).
	ErrNoShards = errors.New("client: no shards")
	// ErrShardNotReady: the owner was not ready (or had no address) and
	// did not become ready within Config.OwnerWait. The request was not
	// sent anywhere.
	ErrShardNotReady = errors.New("shard not ready")
	// ErrShardUnreachable: the owner pod could not be reached, or failed
	// before answering. The request went to no other shard.
	ErrShardUnreachable = errors.New("shard unreachable")
	// ErrNoKey: no key rule yielded a key and the context carried none.
	ErrNoKey = errors.New("no shard key")
	// ErrAmbiguousKey: a rule found different values (two X-Shard-Key
	// fields, ?k=1&k=2) or a key the shard could read two ways.
	ErrAmbiguousKey = errors.New("ambiguous shard key")
	// ErrInvalidKey: the key is not one the proxy routes (invalid UTF-8,
	// a JSON number with a fraction, ...).
	ErrInvalidKey = errors.New("invalid shard key")
	// ErrBadBody: a body rule met a body that is not valid JSON, or too deep.
	ErrBadBody = errors.New("request body is not valid JSON")
	// ErrBodyTooLarge: a body rule met a body over Config.MaxBodyBytes.
	ErrBodyTooLarge = errors.New("request body too large")
)

// ShardError is a request that could not be served by its owner: Err is
// ErrShardNotReady or ErrShardUnreachable, Cause what failed.
type ShardError struct {
	// Shard and Ordinal name the owner.
	Shard   string
	Ordinal int
	// Err is ErrShardNotReady or ErrShardUnreachable.
	Err error
	// Cause is what failed on the way to the pod, or nil.
	Cause error
}

func (e *ShardError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%v: %s: %v", e.Err, e.Shard, e.Cause)
	}
	return fmt.Sprintf("%v: %s", e.Err, e.Shard)
}

// Unwrap gives Err and Cause.
func (e *ShardError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

// KeyError is a request whose key the rules could not take: Err is
// ErrNoKey (Tried lists the rules), ErrAmbiguousKey, ErrInvalidKey,
// ErrBadBody or ErrBodyTooLarge (Rule names the rule).
type KeyError struct {
	// Err is one of the key errors above.
	Err error
	// Rule is the rule that refused the request, as written.
	Rule string
	// Tried are the rules tried when none yielded a key (ErrNoKey).
	Tried []string
}

func (e *KeyError) Error() string {
	switch {
	case e.Rule != "":
		return fmt.Sprintf("%v (rule %s)", e.Err, e.Rule)
	case len(e.Tried) > 0:
		return fmt.Sprintf("%v (tried %s)", e.Err, strings.Join(e.Tried, ","))
	}
	return e.Err.Error()
}

// Unwrap gives Err.
func (e *KeyError) Unwrap() error { return e.Err }
