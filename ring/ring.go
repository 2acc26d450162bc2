package ring

import (
	"errors"
	"fmt"
	"math"
)

// Algorithm names a placement formula, as spelled on the --ring flag.
type Algorithm string

const (
	// Jump is jump consistent hashing over xxhash64 of the key. It is the
	// default because a StatefulSet grows and shrinks at its highest ordinal,
	// which is exactly the case where jump moves the minimum number of keys.
	Jump Algorithm = "jump"
	// Consistent is the bounded-load ring of github.com/buraksezer/consistent,
	// kept for compatibility with systems that already place keys with it.
	Consistent Algorithm = "consistent"
	// Modulus is "key mod N" for integer keys, for schemes where clients
	// already route account numbers that way.
	Modulus Algorithm = "modulus"
)

// DefaultPartitions is the partition count of the consistent ring when
// Config.Partitions is 0. A prime spreads hash values evenly over partitions.
const DefaultPartitions = 7919

// maxPartitions bounds the consistent ring's build cost: the library keeps a
// map entry per partition, so an absurd --partitions would exhaust memory
// long before it improved balance.
const maxPartitions = 1 << 20

// maxShards keeps N within int32, the range of jump's result and of the
// consistent partition table, and keeps modulus arithmetic far from overflow.
const maxShards = math.MaxInt32

// Algorithms lists the valid algorithms, default first, for help text and
// error messages.
func Algorithms() []Algorithm {
	return []Algorithm{Jump, Consistent, Modulus}
}

// ParseAlgorithm returns the algorithm spelled exactly s.
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range Algorithms() {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown ring algorithm %q: valid are jump, consistent, modulus", s)
}

// Config selects and tunes the algorithm. The zero value is jump.
type Config struct {
	// Algorithm is the placement formula. "" means Jump.
	Algorithm Algorithm
	// Partitions is the consistent ring's partition count; the other
	// algorithms ignore it. 0 means DefaultPartitions; negative is an error.
	Partitions int
}

// Normalized resolves defaults so that configs which route identically compare
// equal, which Fingerprint relies on.
func (c Config) Normalized() Config {
	if c.Algorithm == "" {
		c.Algorithm = Jump
	}
	if c.Algorithm != Consistent {
		c.Partitions = 0
	} else if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	return c
}

// Ring maps keys to shard indexes. Every implementation is immutable once
// built and safe for concurrent use; Owner takes no lock and does not
// allocate, so it can sit on the request path.
type Ring interface {
	// Owner returns the index in [0, Len()) of the shard that owns key, or
	// -1 when Len() == 0.
	Owner(key []byte) int
	// Len returns the number of shards.
	Len() int
}

// New builds a ring over names, where names[i] is the shard with ordinal i.
// Names must be non-empty and unique: the consistent ring places shards by
// name, so two equal names would silently merge into one shard. An empty
// names list gives a ring whose Owner is always -1.
func New(cfg Config, names []string) (Ring, error) {
	if cfg.Partitions < 0 {
		return nil, fmt.Errorf("partitions must not be negative (0 means %d), got %d", DefaultPartitions, cfg.Partitions)
	}
	cfg = cfg.Normalized()
	if cfg.Partitions > maxPartitions {
		return nil, fmt.Errorf("partitions must be at most %d, got %d", maxPartitions, cfg.Partitions)
	}
	if _, err := ParseAlgorithm(string(cfg.Algorithm)); err != nil {
		return nil, err
	}
	if err := checkNames(names); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return empty{}, nil
	}
	switch cfg.Algorithm {
	case Consistent:
		return newConsistent(names, cfg.Partitions)
	case Modulus:
		return newModulus(len(names)), nil
	default:
		return newJump(len(names)), nil
	}
}

// Sentinels for the name checks, so the reason survives wrapping with the
// shard positions.
var (
	errEmptyName     = errors.New("empty shard name")
	errDuplicateName = errors.New("duplicate shard name")
)

func checkNames(names []string) error {
	if len(names) > maxShards {
		return fmt.Errorf("%d shards is more than the maximum %d", len(names), maxShards)
	}
	seen := make(map[string]int, len(names))
	for i, name := range names {
		if name == "" {
			return fmt.Errorf("shard %d: %w", i, errEmptyName)
		}
		if j, ok := seen[name]; ok {
			return fmt.Errorf("shards %d and %d: %w %q", j, i, errDuplicateName, name)
		}
		seen[name] = i
	}
	return nil
}

// empty is the ring over no shards, so callers need no nil check before
// the first topology arrives or after a scale to zero.
type empty struct{}

var _ Ring = empty{}

func (empty) Owner([]byte) int { return -1 }
func (empty) Len() int         { return 0 }
