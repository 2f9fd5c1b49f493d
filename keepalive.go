package cachedsql

import (
	"sync"
	"time"
)

// A writer's markers live MarkerTTL, and must outlive the statement or
// COMMIT they protect: if they expire first, a reader may fill the row as
// it was before, and a release that then fails leaves that entry stale
// after the write was acknowledged (found by the consistency checker,
// issue 6: a bump write waiting on a lock for longer than MarkerTTL). So
// while a protected write runs, its markers are rewritten before they can
// expire.

// keepAliveEvery is how often markers of ttl, written within flushTimeout,
// are refreshed: twice within the shortest life memcached's one-second
// resolution may give them (ttl - 1s), less the time a write may take, so
// that one failed refresh is survived.
func keepAliveEvery(ttl, flushTimeout time.Duration) time.Duration {
	return max((ttl-time.Second-flushTimeout)/2, 100*time.Millisecond)
}

// keepAlive refreshes tok's markers for s, first written by a protect
// that started at protectedAt, until the returned stop is called. stop
// waits for a refresh in progress (a refresh after the release would put
// the markers back), and reports whether the markers may have lapsed
// while the write ran: a refresh failed, or ended later than the shortest
// life of the markers before it (ttl - 1s after that write began), or the
// connector closed. The release must then treat the write as unprotected.
func (f *flusher) keepAlive(tok token, s *flushSet, protectedAt time.Time) (stop func() (lost bool)) {
	var (
		mu      sync.Mutex // held by a refresh; protects stopped, lost and last
		stopped bool
		lost    bool
		last    = protectedAt // when the latest successful write of the markers began
		timer   *time.Timer
	)
	every := keepAliveEvery(f.markerTTL, f.timeout)
	life := f.markerTTL - time.Second
	refresh := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if f.stopCtx.Err() != nil {
			lost = true // the connector closed: no more refreshes
			return
		}
		f.stats.markerRefreshes.Add(1)
		start := time.Now()
		// Refreshes go on after a lapse: markers in place still keep
		// readers from filling while the write runs.
		err := f.protectAll(f.stopCtx, tok, s, true)
		switch {
		case err != nil:
			lost = true
			f.cfg.logger().Warn("cachedsql: refreshing a running write's cache markers failed; it will be released as unprotected",
				"of", s.describe(), "error", err)
		case time.Since(last) > life:
			lost = true
			f.cfg.logger().Warn("cachedsql: a running write's cache markers were refreshed too late; it will be released as unprotected",
				"of", s.describe(), "late by", time.Since(last)-life)
			last = start
		default:
			last = start
		}
		timer.Reset(every)
	}
	mu.Lock()
	timer = time.AfterFunc(every, refresh)
	mu.Unlock()
	return func() bool {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
		return lost
	}
}
