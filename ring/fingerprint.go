package ring

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// Fingerprint returns 16 hex digits that identify the ring New(cfg, names)
// would build, so operators can check that proxy replicas agree (/shards).
// Equal fingerprints mean every key routes to the same index.
//
// The config is normalized first, so the zero Config and an explicit Jump
// agree, and Partitions counts only for Consistent, the one algorithm it
// changes. Names are hashed in index order because the index is what the
// proxy routes to: the same names in another order are a different ring even
// where the placement by name would be the same.
func Fingerprint(cfg Config, names []string) string {
	cfg = cfg.Normalized()
	d := xxhash.New()
	// A version tag lets a future encoding change never collide with this one.
	d.WriteString("shard-proxy ring v1\x00")
	d.WriteString(string(cfg.Algorithm))
	d.WriteString("\x00")
	if cfg.Algorithm == Consistent {
		d.WriteString(strconv.Itoa(cfg.Partitions))
	}
	d.WriteString("\x00")
	// Length prefixes keep ["ab","c"] and ["a","bc"] apart.
	var buf [binary.MaxVarintLen64]byte
	for _, name := range names {
		d.Write(buf[:binary.PutUvarint(buf[:], uint64(len(name)))])
		d.WriteString(name)
	}
	return fmt.Sprintf("%016x", d.Sum64())
}
