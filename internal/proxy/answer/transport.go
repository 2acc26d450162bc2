package answer

import (
	"context"
	"errors"
	"net"
	"os"
)

// FromTransport maps the failure of a request sent through a transport
// (net/http's, to an h2c shard) to the proxy's answer: the cause its
// context was cancelled with (a moved key, the upstream timeout), a
// timeout, else an unreachable shard.
func FromTransport(ctx context.Context, err error) error {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, ErrOwnerMoved):
		return ErrOwnerMoved
	case errors.Is(cause, ErrShardTimeout), errors.Is(ctx.Err(), context.DeadlineExceeded), IsTimeout(err):
		return ErrShardTimeout
	}
	return ErrShardDown
}

// FromShard maps what went wrong on a shard connection to the proxy's
// answer: the proxy's own error as it is, a timeout as 504, anything else
// as 502.
func FromShard(err error) error {
	var pe *Error
	switch {
	case errors.As(err, &pe):
		return err
	case IsTimeout(err):
		return ErrShardTimeout
	}
	return ErrShardDown
}

// IsTimeout tells whether err is a deadline that passed.
func IsTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
