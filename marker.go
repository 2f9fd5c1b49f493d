package cachedsql

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"strconv"
)

// Besides entries, the items at an entry key can be markers: a LEASE, held
// by the filler that will cas the entry in, or a TOMBSTONE, written by a
// writer before it commits and cleared after. Both carry their owner's
// token, so an owner never mistakes another's marker for its own. Markers
// start with a zero byte, which no entry starts with.
const (
	markerLease     = "\x00L"
	markerTombstone = "\x00T"
)

// token identifies one lease or one writer's tombstones.
type token [16]byte

func newToken() token {
	var t token
	binary.LittleEndian.PutUint64(t[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(t[8:], rand.Uint64())
	return t
}

func leaseValue(t token) []byte     { return append([]byte(markerLease), t[:]...) }
func tombstoneValue(t token) []byte { return append([]byte(markerTombstone), t[:]...) }

// itemState is what an item at an entry key holds.
type itemState uint8

const (
	stateAbsent itemState = iota
	stateLease
	stateTombstone
	stateValue // anything else: an entry, or garbage that decodes as a miss
)

func stateOf(it *Item) (itemState, token) {
	if it == nil {
		return stateAbsent, token{}
	}
	var t token
	switch {
	case len(it.Value) == len(markerLease)+len(t) && bytes.HasPrefix(it.Value, []byte(markerLease)):
		copy(t[:], it.Value[len(markerLease):])
		return stateLease, t
	case len(it.Value) == len(markerTombstone)+len(t) && bytes.HasPrefix(it.Value, []byte(markerTombstone)):
		copy(t[:], it.Value[len(markerTombstone):])
		return stateTombstone, t
	}
	return stateValue, token{}
}

// A generation item holds "G" and the table shard's current generation.
// Any other value (the write path's in-flight marks, garbage) means the
// generation is changing: nobody fills until it settles.
const genPrefix = "G"

func newGeneration() string { return strconv.FormatUint(rand.Uint64(), 36) }

func genValue(gen string) []byte { return []byte(genPrefix + gen) }

// parseGen returns the generation an item holds; ok is false when it holds
// something else.
func parseGen(it *Item) (gen string, ok bool) {
	if it == nil || len(it.Value) <= len(genPrefix) || string(it.Value[:len(genPrefix)]) != genPrefix {
		return "", false
	}
	return string(it.Value[len(genPrefix):]), true
}
