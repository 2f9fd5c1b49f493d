package cachedsql

import (
	"context"
	"errors"
	"time"
)

// Cache is where cachedsql keeps rows and invalidation markers. It has
// memcached's semantics, which the fill and flush protocols rely on; the two
// backends, Memcache and NewMemoryCache, pass one conformance suite that pins
// them. Implementations must be safe for concurrent use and must honour ctx:
// an operation whose context is done returns promptly with ctx.Err() wrapped.
type Cache interface {
	// GetMulti returns the items it found, with their CasID set. Missing keys
	// are absent from the map; that is not an error.
	GetMulti(ctx context.Context, keys []string) (map[string]*Item, error)
	// Add stores item only if its key holds nothing: ErrNotStored otherwise.
	// Like memcached's add, it does not report the new item's CasID.
	Add(ctx context.Context, item *Item) error
	// CompareAndSwap stores item only if the key still holds the version
	// read with item.CasID: ErrCASConflict if it changed, ErrCacheMiss if it
	// is gone (deleted, expired or evicted).
	CompareAndSwap(ctx context.Context, item *Item) error
	// Set stores item unconditionally.
	Set(ctx context.Context, item *Item) error
	// Delete removes key: ErrCacheMiss if there was nothing to remove.
	Delete(ctx context.Context, key string) error
}

// Item is one cache entry.
type Item struct {
	Key   string
	Value []byte
	// TTL is how long the item lives, rounded up to whole seconds; zero
	// means no expiry. At most MaxTTL: memcached reads longer expirations as
	// absolute Unix times.
	TTL time.Duration
	// CasID identifies the version GetMulti returned, for CompareAndSwap.
	CasID uint64
}

// Limits memcached imposes, which every backend enforces alike.
const (
	// MaxKeyLength is the longest key memcached accepts, in bytes.
	MaxKeyLength = 250
	// MaxValueSize is the largest value stored; larger ones get ErrValueTooLarge.
	// memcached's default item size is 1 MiB including its own overhead.
	MaxValueSize = 1<<20 - 512
	// MaxTTL is the longest relative expiration memcached accepts.
	MaxTTL = 30 * 24 * time.Hour
)

// Errors a Cache returns for conditions the protocols test with errors.Is.
// Any other error means the cache could not be reached or misbehaved.
var (
	ErrCacheMiss     = errors.New("cachedsql: cache miss")
	ErrNotStored     = errors.New("cachedsql: cache item not stored: key exists")
	ErrCASConflict   = errors.New("cachedsql: cache compare-and-swap conflict")
	ErrValueTooLarge = errors.New("cachedsql: cache value too large")
	ErrBadKey        = errors.New("cachedsql: cache key malformed or too long")
	ErrBadTTL        = errors.New("cachedsql: cache TTL out of range")
)
