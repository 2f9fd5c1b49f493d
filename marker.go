package cachedsql

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"strconv"
)

// Besides entries, the items at an entry key can be markers: a LEASE, held
// by the filler that will cas the entry in; a TOMBSTONE, written by writers
// before they commit and cleared after, holding the set of tokens of every
// writer in flight (so that one writer's clear never removes another's
// protection); or CLEARED, what a writer's clear leaves: readers treat it
// as absent, but take the lease over it by cas instead of add, since
// memcached has no conditional delete. Leases and tombstones carry their
// owners' tokens, so an owner never mistakes another's marker for its own.
// Markers start with a zero byte, which no entry starts with.
const (
	markerLease     = "\x00L"
	markerTombstone = "\x00T" // followed by one or more 16-byte tokens
	markerCleared   = "\x00C"
)

// maxTombstoneTokens bounds a tombstone's token set (16 bytes each), far
// below memcached's item size; a writer finding a full set fails to
// protect the key rather than drop someone's token.
const maxTombstoneTokens = 4096

// token identifies one lease or one writer's tombstones.
type token [16]byte

func newToken() token {
	var t token
	binary.LittleEndian.PutUint64(t[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(t[8:], rand.Uint64())
	return t
}

func leaseValue(t token) []byte     { return append([]byte(markerLease), t[:]...) }
func tombstoneValue(t token) []byte { return tombstoneSetValue([]token{t}) }
func clearedValue() []byte          { return []byte(markerCleared) }

// tombstoneSetValue encodes a tombstone held by every writer in ts
// (non-empty).
func tombstoneSetValue(ts []token) []byte {
	b := make([]byte, 0, len(markerTombstone)+len(ts)*len(token{}))
	b = append(b, markerTombstone...)
	for _, t := range ts {
		b = append(b, t[:]...)
	}
	return b
}

// tombstoneTokens returns the writers holding the tombstone it, or ok false
// if it is not a tombstone.
func tombstoneTokens(it *Item) (ts []token, ok bool) {
	if it == nil || !isTombstone(it.Value) {
		return nil, false
	}
	body := it.Value[len(markerTombstone):]
	ts = make([]token, len(body)/len(token{}))
	for i := range ts {
		copy(ts[i][:], body[i*len(token{}):])
	}
	return ts, true
}

func isTombstone(v []byte) bool {
	n := len(v) - len(markerTombstone)
	return n > 0 && n%len(token{}) == 0 && bytes.HasPrefix(v, []byte(markerTombstone))
}

// itemState is what an item at an entry key holds.
type itemState uint8

const (
	stateAbsent itemState = iota
	stateLease
	stateTombstone
	stateValue   // anything else: an entry, or garbage that decodes as a miss
	stateCleared // a writer's clear: like absent, but filled by cas
)

// stateOf returns what it holds and, for a lease, its owner; for a
// tombstone, the first of its writers (tombstoneTokens has them all).
func stateOf(it *Item) (itemState, token) {
	if it == nil {
		return stateAbsent, token{}
	}
	var t token
	switch {
	case len(it.Value) == len(markerLease)+len(t) && bytes.HasPrefix(it.Value, []byte(markerLease)):
		copy(t[:], it.Value[len(markerLease):])
		return stateLease, t
	case isTombstone(it.Value):
		copy(t[:], it.Value[len(markerTombstone):])
		return stateTombstone, t
	case string(it.Value) == markerCleared:
		return stateCleared, t
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

// While writers that bump a table are in flight, each of its generation
// shards holds an in-flight mark instead of "G"+generation:
//
//	"F" + ('c' | 'd') + generation + "\x00" + writer tokens (16 bytes each)
//
// Readers see it as a changing generation (not "G"): no fill. The last
// writer to leave replaces it with "G" and a new random generation, unless
// every writer that held it rolled back ('c', clean: nobody committed), in
// which case the generation it holds comes back. A committed writer that
// finds a mark without its token (its own expired and another writer's
// came) marks it dirty, so the other's rollback still bumps.
const genInFlight = "F"

// genMark is a decoded in-flight mark.
type genMark struct {
	dirty   bool
	gen     string
	writers []token
}

func (m *genMark) value() []byte {
	b := make([]byte, 0, len(genInFlight)+2+len(m.gen)+len(m.writers)*len(token{}))
	b = append(b, genInFlight...)
	if m.dirty {
		b = append(b, 'd')
	} else {
		b = append(b, 'c')
	}
	b = append(b, m.gen...)
	b = append(b, 0)
	for _, t := range m.writers {
		b = append(b, t[:]...)
	}
	return b
}

// parseGenMark decodes an in-flight mark; ok is false for anything else.
func parseGenMark(it *Item) (m genMark, ok bool) {
	if it == nil || len(it.Value) < len(genInFlight)+2 || string(it.Value[:len(genInFlight)]) != genInFlight {
		return genMark{}, false
	}
	v := it.Value[len(genInFlight):]
	switch v[0] {
	case 'c':
	case 'd':
		m.dirty = true
	default:
		return genMark{}, false
	}
	v = v[1:]
	end := bytes.IndexByte(v, 0)
	if end <= 0 {
		return genMark{}, false
	}
	m.gen = string(v[:end])
	body := v[end+1:]
	if len(body) == 0 || len(body)%len(token{}) != 0 {
		return genMark{}, false
	}
	m.writers = make([]token, len(body)/len(token{}))
	for i := range m.writers {
		copy(m.writers[i][:], body[i*len(token{}):])
	}
	return m, true
}
