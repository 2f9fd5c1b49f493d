package cachedsql

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// leaseTTL bounds how long a filler that died keeps others from filling;
// memcached's one-second resolution makes anything under 2s unreliable.
const leaseTTL = 3 * time.Second

// lookup is one cacheable read, resolved to cache keys.
type lookup struct {
	entryKey string // the item holding every shape read through this key
	genKey   string // the generation shard the entry must match
	shape    string // which query shape (and extra parameter values)
	rule     string // "table(key)", for messages

	ttl         time.Duration // for an entry holding a row
	missTTL     time.Duration // for an entry holding only "no such row"
	cacheMisses bool
	canFill     bool // false on a server in hot standby: it may lag
}

// filler is the read side of the protocol (design brief §2, Read): serve
// from the cache, or query the database once per cold key and fill with
// add-lease, gets, cas, so that a flush in between makes the fill fail
// rather than store a stale row.
type filler struct {
	cache  *guard
	stats  *counters
	wait   time.Duration // bounded wait on a lease, tombstone or changing generation
	cfg    *Config
	hooks  *fillHooks // nil outside tests
	flight singleflight.Group

	warned sync.Map // rule -> struct{}: rules already reported as violated
}

// fillHooks let tests pause a fill at the points where races happen.
type fillHooks struct {
	beforeQuery func(entryKey string) // leader, flight closed, before the database query
	beforeCas   func(entryKey string) // after the database read, before the cas

	// broken selects a deliberately broken protocol (brokenVariant), so
	// the consistency checker's tests can prove that it detects each
	// defect. It lives here, behind the nil hooks pointer production code
	// already tests, so it costs the production path nothing more than
	// that one predictable branch.
	broken brokenVariant
}

// brokenVariant names a deliberately broken version of the protocol, for
// the consistency checker's self-tests only (export_test.go). The zero
// value is the real protocol.
type brokenVariant uint8

const (
	brokenNone              brokenVariant = iota
	brokenPlainSet                        // fill with plain set: no lease, no cas
	brokenFlushBeforeCommit               // clear the markers before COMMIT
	brokenLateJoin                        // keep a flight open to late joiners
	brokenClearOthers                     // a writer's clear removes other writers' tombstones
	brokenMergeOldGen                     // merge a shape into an entry of an old generation
)

// brokenAs reports whether hooks select variant v (nil hooks: never).
func (h *fillHooks) brokenAs(v brokenVariant) bool { return h != nil && h.broken == v }

// errLeaseHeld tells a flight's callers that another process leads the fill.
var errLeaseHeld = errors.New("cachedsql: lease held elsewhere")

// queryFunc runs the lookup on the database and materializes its rows.
type queryFunc func(context.Context) (*result, error)

// read returns the result of l, from the cache when it can and from the
// database otherwise. Cache failures never reach the caller.
func (f *filler) read(ctx context.Context, l *lookup, query queryFunc) (*result, error) {
	st, err := f.readCache(ctx, l)
	return f.readFrom(ctx, l, st, err, query)
}

// readFrom is read after its cache read returned st, err. A caller that
// serves st.hit itself (countHit, then the result) need not build query.
func (f *filler) readFrom(ctx context.Context, l *lookup, st snapshot, err error, query queryFunc) (*result, error) {
	if err != nil {
		f.stats.misses.Add(1)
		return query(ctx)
	}
	switch {
	case st.hit != nil:
		f.countHit(st.hit)
		return st.hit, nil
	case st.state == stateAbsent || st.state == stateCleared:
		return f.lead(ctx, l, st.gen, st.clearedCas(), query)
	case st.state == stateValue && st.gen != "":
		return f.refill(ctx, l, st, query)
	}
	return f.waitAndRead(ctx, l, query)
}

// readFresh queries the database whatever the cache holds, then stores the
// result where the protocol allows (Fresh).
func (f *filler) readFresh(ctx context.Context, l *lookup, query queryFunc) (*result, error) {
	st, err := f.readCache(ctx, l)
	switch {
	case err != nil || st.gen == "" || (st.state != stateAbsent && st.state != stateCleared && st.state != stateValue):
		f.stats.misses.Add(1)
		return query(ctx)
	case st.state == stateAbsent || st.state == stateCleared:
		return f.lead(ctx, l, st.gen, st.clearedCas(), query)
	}
	return f.refill(ctx, l, st, query)
}

// snapshot is what one GetMulti showed of an entry and its generation.
type snapshot struct {
	hit   *result
	state itemState
	item  *Item
	entry *entry // the decoded entry if it is of the current generation
	gen   string // current generation; "" while it is changing
}

// clearedCas is the cas id a lease must replace: the CLEARED marker's, or
// 0 when the entry is absent (the lease is added).
func (s *snapshot) clearedCas() uint64 {
	if s.state == stateCleared {
		return s.item.CasID
	}
	return 0
}

func (f *filler) readCache(ctx context.Context, l *lookup) (snapshot, error) {
	it, genItem, owned, err := f.cache.getPair(ctx, l.entryKey, l.genKey)
	if err != nil {
		return snapshot{}, err
	}
	// gen is parseGen(genItem), copied out of the item only when the
	// entry does not hold an equal string already (the hit path).
	var gen string
	genBytes, ok := genBytesOf(genItem)
	if !ok && genItem == nil {
		if gen, err = f.initGeneration(ctx, l.genKey); err != nil {
			return snapshot{}, err
		}
	}
	st, _ := stateOf(it)
	s := snapshot{state: st, item: it}
	if st == stateValue && (ok || gen != "") {
		if e, err := decodeEntryOf(it.Value, owned); err == nil && (ok && string(genBytes) == e.gen || !ok && e.gen == gen) {
			if ok {
				gen = e.gen
			}
			s.entry = e
			if r, ok := e.lookup(l.shape); ok {
				s.hit = r
			}
		}
	}
	if ok && gen == "" {
		gen = string(genBytes)
	}
	s.gen = gen
	return s, nil
}

// genBytesOf is parseGen without the copy: the generation's bytes in
// it.Value.
func genBytesOf(it *Item) ([]byte, bool) {
	if it == nil || len(it.Value) <= len(genPrefix) || string(it.Value[:len(genPrefix)]) != genPrefix {
		return nil, false
	}
	return it.Value[len(genPrefix):], true
}

// initGeneration starts a generation shard that is absent (new, evicted or
// expired) at a fresh random value, so entries filled under a lost
// generation can never match again.
func (f *filler) initGeneration(ctx context.Context, key string) (string, error) {
	gen := newGeneration()
	err := f.cache.add(ctx, &Item{Key: key, Value: genValue(gen)})
	if err == nil {
		return gen, nil
	}
	if !errors.Is(err, ErrNotStored) {
		return "", err
	}
	items, err := f.cache.getMulti(ctx, []string{key})
	if err != nil {
		return "", err
	}
	gen, _ = parseGen(items[key]) // "" if it is changing
	return gen, nil
}

// lead fills an absent entry, or a CLEARED one (cleared: the marker's cas
// id; 0 when absent). In-process callers of one key and shape share
// one flight, closed to new joiners the moment its leader queries the
// database: a caller arriving later may have seen a write the query did not.
func (f *filler) lead(ctx context.Context, l *lookup, gen string, cleared uint64, query queryFunc) (*result, error) {
	if !l.canFill || gen == "" {
		f.stats.misses.Add(1)
		return query(ctx)
	}
	flightKey := l.entryKey + "\x00" + l.shape
	// The flight runs on this caller's connection if this caller leads
	// it, so a leader must not return while it runs: database/sql would
	// hand the connection to someone else mid-query. run says whether our
	// closure started (and we lead), or whether we gave up before it did.
	var run atomic.Int32 // flightPending, flightRunning or flightAbandoned
	ch := f.flight.DoChan(flightKey, func() (any, error) {
		if !run.CompareAndSwap(flightPending, flightRunning) {
			return nil, errFlightAbandoned
		}
		return f.fillAbsent(ctx, l, gen, cleared, flightKey, query)
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		if run.CompareAndSwap(flightPending, flightAbandoned) {
			return nil, ctx.Err() // a joiner, or a leader that never started
		}
		<-ch // our own flight: its query honours ctx and ends soon
		return nil, ctx.Err()
	}
	switch {
	case errors.Is(res.Err, errLeaseHeld):
		return f.waitAndRead(ctx, l, query)
	case res.Err != nil && res.Shared && ctx.Err() == nil:
		// The leader's failure may be its own context's: try alone.
		f.stats.misses.Add(1)
		return query(ctx)
	case res.Err != nil:
		return nil, res.Err
	}
	return res.Val.(*result), nil
}

// States of a caller's flight closure (lead).
const (
	flightPending int32 = iota
	flightRunning
	flightAbandoned
)

// errFlightAbandoned ends a flight whose leader gave up before it started;
// its joiners then read alone.
var errFlightAbandoned = errors.New("cachedsql: fill abandoned by its leader")

// fillAbsent is a flight's leader: lease, query, cas. The lease is added
// over an absent entry, or swapped by cas for the CLEARED marker read with
// cas id cleared (never added over it: a writer's tombstone may have
// replaced it since).
func (f *filler) fillAbsent(ctx context.Context, l *lookup, gen string, cleared uint64, flightKey string, query queryFunc) (*result, error) {
	if f.hooks != nil && f.hooks.broken == brokenPlainSet {
		return f.brokenSetFill(ctx, l, gen, flightKey, query)
	}
	tok := newToken()
	var err error
	if cleared == 0 {
		err = f.cache.add(ctx, &Item{Key: l.entryKey, Value: leaseValue(tok), TTL: leaseTTL})
	} else {
		err = f.cache.compareAndSwap(ctx, &Item{Key: l.entryKey, Value: leaseValue(tok), TTL: leaseTTL, CasID: cleared})
	}
	switch {
	case errors.Is(err, ErrNotStored), errors.Is(err, ErrCASConflict), errors.Is(err, ErrCacheMiss):
		return nil, errLeaseHeld
	case err != nil:
		f.flight.Forget(flightKey)
		f.stats.misses.Add(1)
		return query(ctx)
	}
	// add reports no cas id: read the lease back, and check it is still ours
	// (a writer may have replaced it already).
	items, err := f.cache.getMulti(ctx, []string{l.entryKey})
	lease := items[l.entryKey]
	if st, owner := stateOf(lease); err != nil || st != stateLease || owner != tok {
		f.flight.Forget(flightKey)
		f.stats.misses.Add(1)
		return query(ctx)
	}
	if f.hooks != nil && f.hooks.beforeQuery != nil {
		f.hooks.beforeQuery(l.entryKey)
	}
	if !f.hooks.brokenAs(brokenLateJoin) {
		f.flight.Forget(flightKey)
	}
	f.stats.misses.Add(1)
	res, err := query(ctx)
	if err != nil {
		// Let the lease lapse soon rather than block fills for leaseTTL.
		f.cache.compareAndSwap(ctx, &Item{Key: l.entryKey, Value: leaseValue(tok), TTL: time.Second, CasID: lease.CasID})
		return nil, err
	}
	if declined := f.store(ctx, l, &entry{gen: gen}, res, lease.CasID); declined {
		// Nothing to store (several rows, misses not cached, a result
		// that cannot be cached): left in place, the lease would make
		// every reader of the key wait for leaseTTL. An entry of this
		// generation without shapes sends them to the database at once,
		// and any flush replaces it as it would the lease.
		if value, err := (&entry{gen: gen}).encode(); err == nil {
			f.cache.compareAndSwap(ctx, &Item{Key: l.entryKey, Value: value, TTL: leaseTTL, CasID: lease.CasID})
		}
	}
	return res, nil
}

// refill serves a shape the entry lacks, or an entry of an old generation
// or one that does not decode: query, then cas the item read. An entry of
// the current generation gains the shape; anything else is replaced whole,
// never merged into (an old entry's other shapes may be stale).
func (f *filler) refill(ctx context.Context, l *lookup, st snapshot, query queryFunc) (*result, error) {
	f.stats.misses.Add(1)
	res, err := query(ctx)
	if err != nil || !l.canFill {
		return res, err
	}
	base := st.entry
	if base == nil {
		base = &entry{gen: st.gen}
		if f.hooks.brokenAs(brokenMergeOldGen) {
			if old, err := decodeEntry(st.item.Value); err == nil {
				old.gen = st.gen // the defect: old shapes pass as current
				base = old
			}
		}
	}
	f.store(ctx, l, base, res, st.item.CasID)
	return res, nil
}

// brokenSetFill is brokenPlainSet's fill (tests only): query, then store
// with a plain set, which can overwrite a writer's marker with a row read
// before its commit.
func (f *filler) brokenSetFill(ctx context.Context, l *lookup, gen string, flightKey string, query queryFunc) (*result, error) {
	f.flight.Forget(flightKey)
	f.stats.misses.Add(1)
	res, err := query(ctx)
	if err != nil || res.rowCount() > 1 {
		return res, err
	}
	if ok, _ := res.cacheable(); !ok {
		return res, nil
	}
	e := (&entry{gen: gen}).with(l.shape, res)
	value, err := e.encode()
	if err != nil {
		return res, nil
	}
	if f.hooks.beforeCas != nil {
		f.hooks.beforeCas(l.entryKey)
	}
	if f.cache.set(ctx, &Item{Key: l.entryKey, Value: value, TTL: l.ttl}) == nil {
		f.stats.fills.Add(1)
	}
	return res, nil
}

// waitAndRead waits, within the bounded wait, for a lease, tombstone or
// changing generation to resolve, then reads the database without filling.
func (f *filler) waitAndRead(ctx context.Context, l *lookup, query queryFunc) (*result, error) {
	f.stats.leaseWaits.Add(1)
	deadline := time.Now().Add(f.wait)
	for pause := time.Millisecond; time.Now().Add(pause).Before(deadline); pause *= 2 {
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		st, err := f.readCache(ctx, l)
		if err != nil {
			break
		}
		if st.hit != nil {
			f.countHit(st.hit)
			return st.hit, nil
		}
		if (st.state == stateAbsent || st.state == stateCleared) && st.gen != "" {
			return f.lead(ctx, l, st.gen, st.clearedCas(), query)
		}
	}
	f.stats.misses.Add(1)
	return query(ctx)
}

// checkRows reports a lookup that returned more than one row: it breaks
// its rule, whichever path sent it to the database (a fill, a wait that
// gave up, a failed cache read), and store refuses to cache it. The
// driver's query function calls it on every database result.
func (f *filler) checkRows(l *lookup, res *result) {
	if res.rowCount() <= 1 {
		return
	}
	f.stats.ruleViolations.Add(1)
	if _, dup := f.warned.LoadOrStore(l.rule, struct{}{}); !dup {
		f.cfg.logger().Warn("cachedsql: a cached lookup returned more than one row: the key is not unique; nothing was cached",
			"rule", l.rule)
	}
}

// store writes base plus res over the item read with casID. Losing the
// cas means a writer or another filler changed the item since: the result
// is still right for this caller, but it must not be stored. declined
// reports that nothing was even tried: the item is as it was.
func (f *filler) store(ctx context.Context, l *lookup, base *entry, res *result, casID uint64) (declined bool) {
	if res.rowCount() > 1 {
		return true // reported by checkRows
	}
	if ok, _ := res.cacheable(); !ok {
		return true
	}
	e := base.with(l.shape, res)
	ttl := l.ttl
	if !entryHasRows(e) {
		if !l.cacheMisses {
			return true
		}
		ttl = l.missTTL
	}
	value, err := e.encode()
	if err != nil {
		return true
	}
	if f.hooks != nil && f.hooks.beforeCas != nil {
		f.hooks.beforeCas(l.entryKey)
	}
	err = f.cache.compareAndSwap(ctx, &Item{Key: l.entryKey, Value: value, TTL: jitter(ttl), CasID: casID})
	switch {
	case err == nil:
		f.stats.fills.Add(1)
	case errors.Is(err, ErrCASConflict), errors.Is(err, ErrCacheMiss):
		f.stats.fillRacesLost.Add(1)
	}
	return false
}

func (f *filler) countHit(r *result) {
	if r.rowCount() == 0 {
		f.stats.negativeHits.Add(1)
	} else {
		f.stats.hits.Add(1)
	}
}

// jitter shortens d by up to 10%, so entries filled together do not all
// expire together; memcached rounds to seconds, so short TTLs keep theirs.
func jitter(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d
	}
	return d - time.Duration(rand.Int64N(int64(d/10)))
}

// entryHasRows reports whether any shape of e found a row: an entry of
// misses only lives for the miss TTL.
func entryHasRows(e *entry) bool {
	for _, s := range e.shapes {
		if s.res.rowCount() > 0 {
			return true
		}
	}
	return false
}
