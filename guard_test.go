package cachedsql

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// stubCache answers every call with err after blocking until ctx is done
// when block is set, counting the calls that reached it.
type stubCache struct {
	err   error
	block bool
	calls atomic.Int32
}

func (s *stubCache) call(ctx context.Context) error {
	s.calls.Add(1)
	if s.block {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.err
}

func (s *stubCache) GetMulti(ctx context.Context, _ []string) (map[string]*Item, error) {
	return nil, s.call(ctx)
}
func (s *stubCache) Add(ctx context.Context, _ *Item) error            { return s.call(ctx) }
func (s *stubCache) CompareAndSwap(ctx context.Context, _ *Item) error { return s.call(ctx) }
func (s *stubCache) Set(ctx context.Context, _ *Item) error            { return s.call(ctx) }
func (s *stubCache) Delete(ctx context.Context, _ string) error        { return s.call(ctx) }

func TestGuardBudgetBoundsABlackHole(t *testing.T) {
	stub := &stubCache{block: true}
	g := newGuard(stub, 20*time.Millisecond, new(counters))
	start := time.Now()
	_, err := g.getMulti(context.Background(), []string{"k"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v; want a deadline error", err)
	}
	// Generous bound: the point is milliseconds, not the client's timeouts.
	if took := time.Since(start); took > time.Second {
		t.Errorf("a black-holed read took %v; want about the 20ms budget", took)
	}
}

func TestGuardBreakerOpensAndProbes(t *testing.T) {
	stub := &stubCache{err: errors.New("connection refused")}
	stats := new(counters)
	g := newGuard(stub, time.Second, stats)
	now := time.Unix(1000, 0)
	g.now = func() time.Time { return now }
	ctx := context.Background()

	for range breakerThreshold {
		g.delete(ctx, "k")
	}
	if got := stub.calls.Load(); got != breakerThreshold {
		t.Fatalf("calls before opening = %d; want %d", got, breakerThreshold)
	}
	if err := g.delete(ctx, "k"); !errors.Is(err, errBreakerOpen) {
		t.Fatalf("err while open = %v; want errBreakerOpen", err)
	}
	if got := stub.calls.Load(); got != breakerThreshold {
		t.Errorf("an open breaker let a call through: calls = %d", got)
	}
	if s := stats.snapshot(); s.BreakerTrips != 1 || s.CacheErrors != breakerThreshold {
		t.Errorf("stats = %+v; want 1 trip and %d errors", s, breakerThreshold)
	}

	// After the cooldown one failing probe reopens it, without a new trip.
	now = now.Add(breakerCooldown)
	g.delete(ctx, "k")
	if got := stub.calls.Load(); got != breakerThreshold+1 {
		t.Fatalf("probe did not reach the cache: calls = %d", got)
	}
	if err := g.delete(ctx, "k"); !errors.Is(err, errBreakerOpen) {
		t.Errorf("after a failed probe err = %v; want errBreakerOpen", err)
	}

	// A successful probe closes it; protocol answers count as success.
	now = now.Add(breakerCooldown)
	stub.err = ErrCacheMiss
	g.delete(ctx, "k")
	for range 3 {
		if err := g.delete(ctx, "k"); !errors.Is(err, ErrCacheMiss) {
			t.Errorf("after recovery err = %v; want ErrCacheMiss from the cache", err)
		}
	}
	if s := stats.snapshot(); s.BreakerTrips != 1 {
		t.Errorf("trips = %d; want 1", s.BreakerTrips)
	}
}
