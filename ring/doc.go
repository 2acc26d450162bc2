// Package ring maps request keys to shard ordinals.
//
// It knows nothing of HTTP or Kubernetes: the input is an algorithm and the
// shard names in ordinal order, the output is an immutable Ring that is safe
// for concurrent use. The proxy builds one per topology, and a client that
// routes by itself builds the same one from the same inputs and so picks the
// same shard for every key.
//
// # Placement formulas
//
// A key is a byte string, taken as it is: nothing is trimmed, decoded,
// case-folded or Unicode-normalized, so "é" (U+00E9) and "e" followed by
// U+0301 are different keys. xxhash64 is Sum64 of github.com/cespare/xxhash/v2
// (XXH64 with seed 0) over the key's bytes. For N shards, every algorithm
// gives an ordinal in [0, N):
//
//   - Jump: JumpConsistentHash(xxhash64(key), N), the loop of Lamping and
//     Veach (2014), "A Fast, Minimal Memory, Consistent Hash Algorithm".
//   - Consistent: github.com/buraksezer/consistent v1.0.0 with the shard
//     names as members, PartitionCount Config.Partitions (default
//     DefaultPartitions, 7919), ReplicationFactor 20, Load 1.25 and hasher
//     xxhash64; the owner is the member the library gives partition
//     xxhash64(key) mod PartitionCount, and its ordinal is its place in the
//     names. Only this algorithm reads the names; the others read only N.
//   - Modulus: when the key is an optional '-' then one or more ASCII digits
//     and nothing else, of any length, the integer it spells modulo N, made
//     non-negative (so "-1" is N-1, "007" is 7, "-0" is 0); every other key,
//     "+1", " 1", "1.0", "1e3", "0x10", "-" and non-ASCII digits among them,
//     is xxhash64(key) mod N.
//
// The proxy names shards after their pods: for a StatefulSet named web, name
// i is web-i, the pod with ordinal i. It never routes an empty key (such a
// request is answered 400 "no shard key"), so no owner is promised for one.
//
// # Compatibility
//
// The exported API and the placement formulas are a compatibility promise.
// The same algorithm, partition count and names, in the same order, give
// the same owner for every key in every release: a data-owning shard cannot
// have its keys moved by an upgrade, and clients that place keys themselves,
// in any language, must keep agreeing with the proxy. A change that moves
// any key is a breaking change, not a fix, and it fails TestVectors, which
// checks the ring code against every vector in testdata/vectors.json.
// Fingerprint's value is part of the promise too: proxy replicas running
// different releases compare it.
//
// The file is rewritten only on purpose, with
//
//	go test ./ring -run TestVectors -update
//
// which draws its keys from a fixed seed, so it writes the same file on every
// machine, and refuses while the file in place holds a key that the code
// would now place elsewhere.
//
// # Test vectors
//
// testdata/vectors.json lets a client in any language check itself against
// this package. It is one JSON object in UTF-8, one vector per line:
//
//   - "format" is "shard-proxy ring vectors v1"; a reader refuses any other
//     value. "about", "seed" and "regenerate" say what the file is and how it
//     was made.
//   - "sets" is an array with a set for each ring and each N of 1, 2, 3, 7,
//     64 and 1000. A set has "ring" ("jump", "consistent" or "modulus"),
//     "n", "partitions" (consistent only: its PartitionCount, 7919), "names"
//     (the n shard names, element i being ordinal i) and "vectors".
//   - Each vector is a key and the "ordinal" in [0, n) that owns it. The key
//     is either "key", a JSON string whose UTF-8 encoding is the key's bytes,
//     or, for the keys that are not valid UTF-8 and so cannot be a JSON
//     string, "hex" (lowercase, two digits a byte) with "quoted" beside it:
//     the key with Go's escapes (\xff), to read, never to hash. Exactly one of
//     "key" and "hex" is present, and no key is empty.
//
// For example:
//
//	{"ring":"modulus","n":7,"names":["web-0","web-1","web-2","web-3","web-4","web-5","web-6"],"vectors":[
//	...
//	{"hex":"636166e9","quoted":"caf\\xe9","ordinal":3},
//	{"key":"-0","ordinal":0},
//	{"key":"-1","ordinal":6},
//	{"key":"18446744073709551616","ordinal":2},
//	{"key":"007","ordinal":0},
//	{"key":"1e3","ordinal":1},
//	{"key":"+1","ordinal":3},
//	...
//	]},
//
// A client checks itself by building its ring for each set from ring, n,
// partitions and names, and comparing its owner of every key with ordinal.
// Every set holds at least 1,000 keys: every single byte (NUL, space, '%'
// and '+' among them), every length from 1 to 96 bytes, multibyte and
// invalid UTF-8, keys of 1 to 4 KiB and, for modulus, integers of any size
// and sign (leading zeros, "-0", beyond 64 bits) and near-integers.
package ring
