package cachedsql

import "sync/atomic"

// Stats is a snapshot of a driver's or connector's counters since it was
// created. It is cheap to take; the counters only grow.
type Stats struct {
	// Queries counts statements run for rows (Query, QueryRow).
	Queries uint64
	// Execs counts statements run for a result (Exec).
	Execs uint64
	// PassThroughs counts statements sent to the database untouched because
	// they are not cacheable lookups (Bypasses counts cacheable ones that
	// were not served from the cache).
	PassThroughs uint64

	// Hits counts lookups served a row from the cache.
	Hits uint64
	// NegativeHits counts lookups served a cached "no such row".
	NegativeHits uint64
	// Misses counts cacheable lookups that went to the database.
	Misses uint64
	// Fills counts results stored in the cache.
	Fills uint64
	// FillRacesLost counts fills abandoned because the entry changed
	// between the read and the store (a flush, or another filler).
	FillRacesLost uint64
	// LeaseWaits counts lookups that waited on another filler or writer.
	LeaseWaits uint64
	// RuleViolations counts cacheable lookups that returned several rows.
	RuleViolations uint64
	// Bypasses counts cacheable lookups sent to the database without the
	// cache, by reason.
	Bypasses map[BypassReason]uint64

	// Flushes counts entry keys flushed by committed writes and Flush calls.
	Flushes uint64
	// TableBumps counts tables whose generation committed writes and Flush
	// calls changed (each one invalidates every cached row of the table).
	TableBumps uint64
	// FlushFailures counts writes whose flush could not be recorded before
	// COMMIT (ErrFlushUnavailable, or committed under FailOpenWrites), and
	// clears after COMMIT abandoned until their markers expire.
	FlushFailures uint64
	// ReleaseRetries counts background retries of clears after COMMIT.
	ReleaseRetries uint64
	// MarkerRefreshes counts rewrites of a running write's markers, made
	// so that they outlive a statement or COMMIT longer than MarkerTTL.
	MarkerRefreshes uint64

	// CacheErrors counts cache operations that failed or timed out.
	CacheErrors uint64
	// BreakerTrips counts the times the cache circuit breaker opened.
	BreakerTrips uint64
}

// BypassReason says why a cacheable lookup did not use the cache.
type BypassReason string

// Reasons for a bypass.
const (
	BypassNoCache     BypassReason = "nocache"     // NoCache(ctx), or Fresh(ctx) which refills
	BypassTransaction BypassReason = "transaction" // inside a transaction
	BypassSession     BypassReason = "session"     // the session changed search_path or role
	BypassArgs        BypassReason = "args"        // an argument could not be canonicalised
	BypassStandby     BypassReason = "standby"     // the server is a hot standby: read it, never fill
	BypassFailOpen    BypassReason = "failopen"    // a write committed without a recorded flush (FailOpenWrites)
)

var bypassReasons = [...]BypassReason{BypassNoCache, BypassTransaction, BypassSession, BypassArgs, BypassStandby, BypassFailOpen}

// counters are the live values behind Stats. Each field is updated with
// atomic adds by any connection of the pool and read by Stats.
type counters struct {
	queries         atomic.Uint64
	execs           atomic.Uint64
	passThroughs    atomic.Uint64
	hits            atomic.Uint64
	negativeHits    atomic.Uint64
	misses          atomic.Uint64
	fills           atomic.Uint64
	fillRacesLost   atomic.Uint64
	leaseWaits      atomic.Uint64
	ruleViolations  atomic.Uint64
	bypasses        [len(bypassReasons)]atomic.Uint64
	flushes         atomic.Uint64
	tableBumps      atomic.Uint64
	flushFailures   atomic.Uint64
	releaseRetries  atomic.Uint64
	markerRefreshes atomic.Uint64
	cacheErrors     atomic.Uint64
	breakerTrips    atomic.Uint64

	// meters publishes these counters through OpenTelemetry when a pool's
	// Config has a MeterProvider (metrics.go): read at collection time, so
	// the atomics above stay the only cost on the hot path.
	meters meters
}

func (c *counters) bypass(r BypassReason) {
	for i, known := range bypassReasons {
		if known == r {
			c.bypasses[i].Add(1)
			return
		}
	}
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Queries:         c.queries.Load(),
		Execs:           c.execs.Load(),
		PassThroughs:    c.passThroughs.Load(),
		Hits:            c.hits.Load(),
		NegativeHits:    c.negativeHits.Load(),
		Misses:          c.misses.Load(),
		Fills:           c.fills.Load(),
		FillRacesLost:   c.fillRacesLost.Load(),
		LeaseWaits:      c.leaseWaits.Load(),
		RuleViolations:  c.ruleViolations.Load(),
		Flushes:         c.flushes.Load(),
		TableBumps:      c.tableBumps.Load(),
		FlushFailures:   c.flushFailures.Load(),
		ReleaseRetries:  c.releaseRetries.Load(),
		MarkerRefreshes: c.markerRefreshes.Load(),
		CacheErrors:     c.cacheErrors.Load(),
		BreakerTrips:    c.breakerTrips.Load(),
	}
	for i, r := range bypassReasons {
		if n := c.bypasses[i].Load(); n > 0 {
			if s.Bypasses == nil {
				s.Bypasses = make(map[BypassReason]uint64)
			}
			s.Bypasses[r] = n
		}
	}
	return s
}
