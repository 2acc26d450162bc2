package admin

import (
	"github.com/shard-proxy/shard-proxy/internal/ring"
	"github.com/shard-proxy/shard-proxy/internal/table"
)

func ringName(t *table.Table) ring.Algorithm {
	if t.Config.Algorithm == "" {
		return ring.Jump
	}
	return t.Config.Algorithm
}

func partitions(t *table.Table) int {
	if t.Config.Partitions <= 0 {
		return ring.DefaultPartitions
	}
	return t.Config.Partitions
}
