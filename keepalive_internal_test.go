package cachedsql

import (
	"context"
	"testing"
	"time"
)

// TestKeepAliveLapse: stop reports whether the markers may have lapsed.
// Refreshes on time keep them; a refresh that ends later than the
// markers' shortest life after the previous write (here, a protect that
// began long ago) does not, and neither does a closed connector.
func TestKeepAliveLapse(t *testing.T) {
	ctx := context.Background()
	every := keepAliveEvery(testMarkerTTL, 500*time.Millisecond)
	cases := []struct {
		name        string
		protectedAt time.Duration // before now
		closeFirst  bool
		wantLost    bool
	}{
		{"on time", 0, false, false},
		{"late", 2 * testMarkerTTL, false, true},
		{"connector closed", 0, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, stats := newTestFlusher(t, NewMemoryCache(1<<20))
			set := newFlushSet()
			set.addKey("k")
			tok := newToken()
			if err := f.protect(ctx, tok, set); err != nil {
				t.Fatal(err)
			}
			if c.closeFirst {
				f.stop()
			}
			stop := f.keepAlive(tok, set, time.Now().Add(-c.protectedAt))
			time.Sleep(2*every + every/2)
			if lost := stop(); lost != c.wantLost {
				t.Errorf("lost = %v; want %v", lost, c.wantLost)
			}
			if n := stats.markerRefreshes.Load(); !c.closeFirst && n < 2 {
				t.Errorf("%d refreshes in %v (every %v); want at least 2", n, 2*every+every/2, every)
			}
		})
	}
}
