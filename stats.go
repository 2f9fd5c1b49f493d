package cachedsql

import "sync/atomic"

// Stats is a snapshot of a driver's or connector's counters since it was
// created. It is cheap to take; the counters only grow.
type Stats struct {
	// Queries counts statements run for rows (Query, QueryRow).
	Queries uint64
	// Execs counts statements run for a result (Exec).
	Execs uint64
	// PassThroughs counts statements sent to the database untouched, with
	// no cache involved.
	PassThroughs uint64
	// CacheErrors counts cache operations that failed or timed out.
	CacheErrors uint64
	// BreakerTrips counts the times the cache circuit breaker opened.
	BreakerTrips uint64
}

// counters are the live values behind Stats. Each field is updated with
// atomic adds by any connection of the pool and read by Stats.
type counters struct {
	queries      atomic.Uint64
	execs        atomic.Uint64
	passThroughs atomic.Uint64
	cacheErrors  atomic.Uint64
	breakerTrips atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Queries:      c.queries.Load(),
		Execs:        c.execs.Load(),
		PassThroughs: c.passThroughs.Load(),
		CacheErrors:  c.cacheErrors.Load(),
		BreakerTrips: c.breakerTrips.Load(),
	}
}
