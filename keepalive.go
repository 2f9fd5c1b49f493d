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

// keepAliveEvery is how often markers of ttl are refreshed: twice within
// the shortest life memcached's one-second resolution may give them
// (ttl - 1s), so that one failed refresh is survived.
func keepAliveEvery(ttl time.Duration) time.Duration {
	return max((ttl-time.Second)/2, 100*time.Millisecond)
}

// keepAlive refreshes tok's markers for s until the returned stop is
// called. stop waits for a refresh in progress (a refresh after the
// release would put the markers back), and reports whether a refresh
// failed: the markers may then have expired while the write ran, and the
// release must treat the write as unprotected.
func (f *flusher) keepAlive(tok token, s *flushSet) (stop func() (lost bool)) {
	var (
		mu      sync.Mutex // held by a refresh; protects stopped and lost
		stopped bool
		lost    bool
		timer   *time.Timer
	)
	every := keepAliveEvery(f.markerTTL)
	refresh := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		f.stats.markerRefreshes.Add(1)
		if err := f.protectAll(f.stopCtx, tok, s, true); err != nil {
			lost = true
			f.cfg.logger().Warn("cachedsql: refreshing a running write's cache markers failed; it will be released as unprotected",
				"of", s.describe(), "error", err)
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
