package cachedsql

import (
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Defaults applied to the zero values of Config.
const (
	DefaultDriver  = "pgx"
	DefaultTTL     = 10 * time.Minute
	DefaultMissTTL = time.Minute

	DefaultCacheTimeout = 50 * time.Millisecond
	DefaultLeaseWait    = 50 * time.Millisecond

	DefaultFlushTimeout = 250 * time.Millisecond
	DefaultMarkerTTL    = 10 * time.Second
	// MinMarkerTTL is the shortest MarkerTTL accepted: memcached expires
	// items on a one-second clock, so a 1s marker may live almost nothing.
	MinMarkerTTL = 2 * time.Second
)

// Config configures a caching driver or connector. The zero value is valid:
// it wraps "pgx" and caches nothing. Register and NewConnector copy the Config
// and validate the copy once; the caller's value is never written, and later
// changes to it have no effect.
type Config struct {
	// Driver is the name of the registered driver to wrap (Register only;
	// NewConnector wraps the connector it is given). Default "pgx".
	Driver string

	// Rules say which tables and keys are cached. Empty: nothing is cached.
	Rules Rules

	// Cache stores rows and invalidation markers: Memcache in production,
	// NewMemoryCache for a single process. Nil: nothing is cached (every
	// statement passes through), with one warning if Rules is not empty.
	Cache Cache

	// TTL bounds how long a cached row lives, for tables whose rules set no
	// TTL. Jittered by up to 10% so entries filled together do not expire
	// together. Default 10m; at most 30 days.
	TTL time.Duration

	// MissTTL bounds how long a cached "no such row" lives, for tables whose
	// rules set none. Default 1m; at most 30 days.
	MissTTL time.Duration

	// Namespace is appended to the default namespace, a hash of the
	// database's identity (on PostgreSQL its cluster's system identifier
	// and the database's OID), which separates databases sharing one
	// memcached. Default empty.
	Namespace string

	// SchemaVersion is part of every key: change it with migrations that
	// change cached tables, so old entries are never read. Default empty.
	SchemaVersion string

	// FailOpenWrites commits writes whose invalidation cannot be recorded
	// (the cache is down), bypassing the cache for the tables they wrote
	// until their TTL has passed. Default false: such a write is rolled back
	// with ErrFlushUnavailable.
	FailOpenWrites bool

	// CacheTimeout bounds each cache operation of a read, so a slow or
	// black-holed cache costs a read at most this much (and nothing once
	// the circuit breaker opens). Default 50ms.
	CacheTimeout time.Duration

	// LeaseWait bounds how long a read waits for another process's fill
	// or a writer's commit before it reads the database without filling.
	// Default 50ms.
	LeaseWait time.Duration

	// FlushTimeout bounds the cache side of one write's commit: recording
	// every key and table it touched before COMMIT (all at once, under this
	// one deadline), and the first attempt to clear them after. A write
	// whose flush cannot be recorded in time fails with ErrFlushUnavailable
	// (see FailOpenWrites). Default 250ms.
	FlushTimeout time.Duration

	// MarkerTTL is how long a writer's markers (tombstones on keys,
	// in-flight marks on table generations) live in the cache. Reads of a
	// marked key or table go to the database without filling until the
	// writer clears its markers after COMMIT; if it cannot, they expire
	// after MarkerTTL and force misses. It must exceed the longest COMMIT.
	// Default 10s; at least 2s (memcached's one-second clock); at most 30
	// days.
	MarkerTTL time.Duration

	// MeterProvider receives OpenTelemetry metrics: the Stats counters as
	// observable counters (hits, misses, negative hits, fills, fill races
	// lost, keys flushed, table bumps, bypasses by reason, cache errors,
	// lease waits, rule violations, ...), the circuit breaker's state as a
	// gauge, and each write's flush latency as a histogram; see metrics.go
	// for the names. Counts are read from the counters at collection time,
	// so metrics cost nothing per query. Pools of one Driver share one set
	// of instruments. Nil (the default): no metrics (Stats still works).
	MeterProvider metric.MeterProvider

	// Logger receives warnings (rule violations, a cache that is down) and
	// debug lines. Default slog.Default(), looked up when a message is logged.
	Logger *slog.Logger
}

// validated returns a deep copy of cfg with defaults applied, or an error
// wrapping ErrConfig naming the first bad field.
func (cfg Config) validated() (Config, error) {
	out := cfg
	out.Rules = cfg.Rules.clone()
	if out.Driver == "" {
		out.Driver = DefaultDriver
	}
	if err := checkTTL("TTL", out.TTL); err != nil {
		return Config{}, err
	}
	if err := checkTTL("MissTTL", out.MissTTL); err != nil {
		return Config{}, err
	}
	if out.CacheTimeout < 0 || out.LeaseWait < 0 || out.FlushTimeout < 0 {
		return Config{}, fmt.Errorf("%w: CacheTimeout, LeaseWait and FlushTimeout must not be negative", ErrConfig)
	}
	if out.MarkerTTL != 0 && (out.MarkerTTL < MinMarkerTTL || out.MarkerTTL > MaxTTL) {
		return Config{}, fmt.Errorf("%w: MarkerTTL %v out of range [2s, 720h]: memcached expires items on a one-second clock", ErrConfig, out.MarkerTTL)
	}
	if out.TTL == 0 {
		out.TTL = DefaultTTL
	}
	if out.MissTTL == 0 {
		out.MissTTL = DefaultMissTTL
	}
	if err := out.Rules.Validate(); err != nil {
		return Config{}, err // a *RulesError, which matches ErrConfig
	}
	if err := checkCache(out.Cache); err != nil {
		return Config{}, fmt.Errorf("%w: Cache: %w", ErrConfig, err)
	}
	return out, nil
}

func checkTTL(field string, d time.Duration) error {
	if d < 0 || d > MaxTTL {
		return fmt.Errorf("%w: %s %v out of range [0, 720h]: memcached reads longer expirations as absolute times", ErrConfig, field, d)
	}
	return nil
}

func (cfg *Config) cacheTimeout() time.Duration {
	if cfg.CacheTimeout == 0 {
		return DefaultCacheTimeout
	}
	return cfg.CacheTimeout
}

func (cfg *Config) leaseWait() time.Duration {
	if cfg.LeaseWait == 0 {
		return DefaultLeaseWait
	}
	return cfg.LeaseWait
}

func (cfg *Config) flushTimeout() time.Duration {
	if cfg.FlushTimeout == 0 {
		return DefaultFlushTimeout
	}
	return cfg.FlushTimeout
}

func (cfg *Config) markerTTL() time.Duration {
	if cfg.MarkerTTL == 0 {
		return DefaultMarkerTTL
	}
	return cfg.MarkerTTL
}

// logger returns the configured logger, or the process default at the time
// of the call, so slog.SetDefault after Open still takes effect.
func (cfg *Config) logger() *slog.Logger {
	if cfg.Logger != nil {
		return cfg.Logger
	}
	return slog.Default()
}
