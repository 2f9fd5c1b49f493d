package cachedsql

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// errBreakerOpen is returned without calling the cache while the breaker is
// open. Callers treat it like any other cache failure.
var errBreakerOpen = errors.New("cachedsql: cache circuit breaker open")

// Breaker settings: this many consecutive failures open the breaker for
// breakerCooldown; then one probe is let through, and its outcome closes or
// reopens it.
const (
	breakerThreshold = 5
	breakerCooldown  = time.Second
)

// guard bounds every cache operation by a time budget and stops calling a
// cache that keeps failing, so a dead, slow or black-holed memcached costs a
// read at most the budget, and nothing once the breaker is open.
type guard struct {
	cache  Cache
	budget time.Duration
	stats  *counters
	now    func() time.Time // the clock, replaceable in tests

	// failures counts consecutive failed operations; any success resets it.
	failures atomic.Int32
	// openUntil is when the open breaker lets a probe through (UnixNano);
	// 0 when closed.
	openUntil atomic.Int64
	// probing is set while the one probe of a half-open breaker runs.
	probing atomic.Bool
}

func newGuard(cache Cache, budget time.Duration, stats *counters) *guard {
	return &guard{cache: cache, budget: budget, stats: stats, now: time.Now}
}

// admit reports whether an operation may call the cache, and whether it is
// the probe of a half-open breaker.
func (g *guard) admit() (ok, probe bool) {
	until := g.openUntil.Load()
	if until == 0 {
		return true, false
	}
	if g.now().UnixNano() < until || !g.probing.CompareAndSwap(false, true) {
		return false, false
	}
	return true, true
}

// done records an operation's outcome. Answers that are part of the
// protocol (a miss, a lost add or cas, a refused value) are successes.
func (g *guard) done(err error, probe bool) {
	if probe {
		defer g.probing.Store(false)
	}
	if err == nil || errors.Is(err, ErrCacheMiss) || errors.Is(err, ErrNotStored) ||
		errors.Is(err, ErrCASConflict) || errors.Is(err, ErrValueTooLarge) || errors.Is(err, ErrBadKey) {
		g.failures.Store(0)
		g.openUntil.Store(0)
		return
	}
	g.stats.cacheErrors.Add(1)
	if g.failures.Add(1) >= breakerThreshold || probe {
		if g.openUntil.Swap(g.now().Add(breakerCooldown).UnixNano()) == 0 {
			g.stats.breakerTrips.Add(1)
		}
	}
}

// selfBounded is implemented by the built-in caches: boundedBy reports
// whether every operation, given a context that can never be done, returns
// within budget on its own (the in-process cache never waits on anything
// but its lock; memcached's client when its Timeout is within budget, as
// its operations then ignore a budget deadline anyway: see
// memcacheCache.synchronous).
type selfBounded interface {
	boundedBy(budget time.Duration) bool
}

// run calls op under the budget unless the breaker is open. A context
// that can never be done, on a cache that bounds itself within the budget,
// needs no timer: op runs with it as is.
func (g *guard) run(ctx context.Context, op func(context.Context) error) error {
	return g.runLazy(ctx, false, op)
}

// runLazy is run; with lazyCancel (see pairGetter) a context that can be
// cancelled needs no timer either.
func (g *guard) runLazy(ctx context.Context, lazyCancel bool, op func(context.Context) error) error {
	ok, probe := g.admit()
	if !ok {
		return errBreakerOpen
	}
	var err error
	if sb, bounded := g.cache.(selfBounded); bounded && (ctx.Done() == nil || lazyCancel) && sb.boundedBy(g.budget) {
		err = op(ctx)
	} else {
		ctx, cancel := context.WithTimeout(ctx, g.budget)
		err = op(ctx)
		cancel()
	}
	g.done(err, probe)
	return err
}

func (g *guard) getMulti(ctx context.Context, keys []string) (items map[string]*Item, err error) {
	err = g.run(ctx, func(ctx context.Context) error {
		items, err = g.cache.GetMulti(ctx, keys)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cachedsql: cache read: %w", err)
	}
	return items, nil
}

// pairGetter is implemented by the built-in caches: GetMulti of two keys
// without building a map. The values it returns are never written by
// anyone afterwards, so readers may alias them (decodeEntry does). Other
// Caches are read through GetMulti.
//
// lazyCancel says the caller accepts that a cancellation of ctx ends the
// read only at the cache's own timeout, which is within the guard's
// budget (ctx's deadline, if earlier, still ends it): the read then needs
// no timer, goroutine or callback to watch ctx.
type pairGetter interface {
	getPair(ctx context.Context, k1, k2 string, lazyCancel bool) (*Item, *Item, error)
}

// getPair reads two keys in one operation, as getMulti does: nil for a key
// not found. owned reports values nobody else will write, which the caller
// may alias instead of copying.
func (g *guard) getPair(ctx context.Context, k1, k2 string) (i1, i2 *Item, owned bool, err error) {
	pg, ok := g.cache.(pairGetter)
	if !ok {
		items, err := g.getMulti(ctx, []string{k1, k2})
		if err != nil {
			return nil, nil, false, err
		}
		return items[k1], items[k2], false, nil
	}
	// The hit path: on a cache whose own timeout bounds the read within
	// the budget, a caller's context that can be cancelled needs no timer,
	// and the read may ignore its cancellation up to that timeout. Under
	// the guard's timer, the read ends by the budget's deadline anyway.
	err = g.runLazy(ctx, true, func(ctx context.Context) error {
		i1, i2, err = pg.getPair(ctx, k1, k2, true)
		return err
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("cachedsql: cache read: %w", err)
	}
	return i1, i2, true, nil
}

func (g *guard) add(ctx context.Context, item *Item) error {
	return g.run(ctx, func(ctx context.Context) error { return g.cache.Add(ctx, item) })
}

func (g *guard) compareAndSwap(ctx context.Context, item *Item) error {
	return g.run(ctx, func(ctx context.Context) error { return g.cache.CompareAndSwap(ctx, item) })
}

func (g *guard) set(ctx context.Context, item *Item) error {
	return g.run(ctx, func(ctx context.Context) error { return g.cache.Set(ctx, item) })
}

func (g *guard) delete(ctx context.Context, key string) error {
	return g.run(ctx, func(ctx context.Context) error { return g.cache.Delete(ctx, key) })
}
