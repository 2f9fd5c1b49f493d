package cachedsql

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// The write side of the protocol (design brief §2, Write; §3, items 2 and
// 3), the cache half of it: the SQL side computes what a transaction
// touched (a flushSet), calls protect before COMMIT and release after.
//
// Entry keys. protect turns every key into a TOMBSTONE holding the set of
// tokens of the writers in flight: added over an absent key, the writer's
// token added by cas to a tombstone, and anything else (an entry, a lease,
// CLEARED, garbage) replaced by cas, which also makes a filler holding a
// lease lose its cas. While a tombstone is there nothing can be filled.
// release removes the writer's token by cas; the last writer to leave
// swaps the tombstone for CLEARED (a conditional clear: memcached has no
// conditional delete, and an unconditional one could remove a tombstone
// that landed in between). A committed writer that finds its token gone
// (the tombstone expired or was evicted) and an entry, a lease or garbage
// in its place cannot know that the item was filled after its commit: it
// clears it too. Another writer's tombstone is left alone: that writer
// clears it, or it expires.
//
// Tables. protect marks every generation shard of the table in flight
// (genMark, with the writers' tokens); readers see a changing generation
// and do not fill. release removes the writer's token; the last writer to
// leave sets "G" and a new random generation (the bump), or the old one
// back if every writer that held the mark rolled back. A mark that expired
// is restarted by the next reader at a new random generation, which
// invalidates everything too; a committed writer finding "G" without its
// mark bumps again.
//
// Markers live MarkerTTL. A release that fails is retried in the
// background until MarkerTTL has passed; after that the markers have
// expired by themselves (or are held by later writers), forcing misses.

// flushConcurrency bounds the cache operations one protect or release has
// in flight at once.
const flushConcurrency = 16

// maxCasAttempts bounds the compare-and-swap retries on one item within
// one protect or release attempt.
const maxCasAttempts = 32

// flushNameLimit bounds how many keys and tables an error message names.
const flushNameLimit = 8

// flushSet is what one transaction must invalidate: entry keys, and tables
// by their generation shard keys (genKey, genBuckets of them). The zero
// value is not usable: use newFlushSet. Not safe for concurrent use.
type flushSet struct {
	keys   map[string]struct{}
	tables map[string][]string // table name -> its generation shard keys
}

func newFlushSet() *flushSet {
	return &flushSet{keys: make(map[string]struct{}), tables: make(map[string][]string)}
}

// addKey adds the entry key k.
func (s *flushSet) addKey(k string) { s.keys[k] = struct{}{} }

// addTable adds a table to bump, with the keys of its generation shards.
func (s *flushSet) addTable(name string, genKeys []string) {
	if _, ok := s.tables[name]; !ok {
		s.tables[name] = genKeys
	}
}

// merge adds everything o holds; o may be nil.
func (s *flushSet) merge(o *flushSet) {
	if o == nil {
		return
	}
	for k := range o.keys {
		s.keys[k] = struct{}{}
	}
	for t, g := range o.tables {
		s.addTable(t, g)
	}
}

// keyCount is the number of entry keys.
func (s *flushSet) keyCount() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// len is the number of keys and tables.
func (s *flushSet) len() int {
	if s == nil {
		return 0
	}
	return len(s.keys) + len(s.tables)
}

// empty reports whether there is nothing to flush; s may be nil.
func (s *flushSet) empty() bool { return s.len() == 0 }

// tableNames are the tables to bump, sorted.
func (s *flushSet) tableNames() []string {
	if s == nil {
		return nil
	}
	names := make([]string, 0, len(s.tables))
	for t := range s.tables {
		names = append(names, t)
	}
	sort.Strings(names)
	return names
}

// describe names the set's keys and tables for messages, bounded.
func (s *flushSet) describe() string {
	keys := make([]string, 0, len(s.keys))
	for k := range s.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	if len(keys) > 0 {
		parts = append(parts, "keys "+nameList(keys))
	}
	if len(s.tables) > 0 {
		parts = append(parts, "tables "+nameList(s.tableNames()))
	}
	return strings.Join(parts, " and ")
}

func nameList(names []string) string {
	if len(names) <= flushNameLimit {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:flushNameLimit], ", "), len(names)-flushNameLimit)
}

// flushTarget is one item protect and release work on: an entry key, or
// one generation shard of table.
type flushTarget struct {
	key   string
	table string // "" for an entry key
}

// targets lists every item of s: entry keys, then generation shards.
func (s *flushSet) targets() []flushTarget {
	out := make([]flushTarget, 0, len(s.keys)+len(s.tables)*genBuckets)
	for k := range s.keys {
		out = append(out, flushTarget{key: k})
	}
	for t, gks := range s.tables {
		for _, gk := range gks {
			out = append(out, flushTarget{key: gk, table: t})
		}
	}
	return out
}

func targetKeys(ts []flushTarget) []string {
	keys := make([]string, len(ts))
	for i, t := range ts {
		keys[i] = t.key
	}
	return keys
}

// flusher is the cache side of writes. One per connector; safe for
// concurrent use.
type flusher struct {
	cache     *guard
	stats     *counters
	cfg       *Config
	timeout   time.Duration // one protect, or one release attempt
	markerTTL time.Duration
	bypassTTL time.Duration // how long bypassLocally bypasses a table
	hooks     *flushHooks   // nil outside tests

	// bypass maps a table name to the UnixNano time until which this
	// process neither serves nor fills it (bypassLocally). sync.Map is safe
	// for concurrent use by itself; it is empty unless FailOpenWrites was
	// used.
	bypass sync.Map

	// bg counts background release retries still running (waitIdle).
	bg sync.WaitGroup
	// stopCtx ends background retries when stop is called (tests).
	stopCtx context.Context
	stop    context.CancelFunc

	// metrics records flush latency (Config.MeterProvider; nil: none), and
	// detachMetrics undoes instrument at close. See metrics.go.
	metrics       *flushMetrics
	detachMetrics func()
}

// flushHooks let tests pause a writer where races happen.
type flushHooks struct {
	beforeRelease func() // after COMMIT, before the release's first attempt
	afterProtect  func() // after a successful protect, before COMMIT

	// broken selects a deliberately broken protocol, for the consistency
	// checker's self-tests (see fillHooks.broken): behind the nil hooks
	// pointer, it costs production one predictable branch.
	broken brokenVariant
}

// newFlusher returns the flusher of a connector whose cache is g and whose
// validated configuration is cfg.
func newFlusher(g *guard, stats *counters, cfg *Config) *flusher {
	ctx, cancel := context.WithCancel(context.Background())
	f := &flusher{
		cache:     g,
		stats:     stats,
		cfg:       cfg,
		timeout:   cfg.flushTimeout(),
		markerTTL: cfg.markerTTL(),
		bypassTTL: longestTTL(cfg),
		stopCtx:   ctx,
		stop:      cancel,
	}
	f.metrics, f.detachMetrics = stats.instrument(cfg.MeterProvider, g, func(err error) {
		cfg.logger().Warn("cachedsql: cannot register OpenTelemetry metrics", "error", err)
	})
	return f
}

// longestTTL is the longest any entry may live under cfg.
func longestTTL(cfg *Config) time.Duration {
	d := max(cfg.TTL, cfg.MissTTL, cfg.Rules.TTL, cfg.Rules.MissTTL, DefaultTTL, DefaultMissTTL)
	for _, t := range cfg.Rules.Tables {
		d = max(d, t.TTL, t.MissTTL)
	}
	return d
}

// protect records, before COMMIT, that the writer tok is about to change
// everything in s: a tombstone on every key, an in-flight mark on every
// generation shard of every table, all sent at once under one deadline
// (FlushTimeout). From its return until release, no reader anywhere fills
// those keys or tables, and fills in progress fail.
//
// On failure (cache down, breaker open, deadline, too much contention) it
// undoes whatever it recorded and returns an error wrapping
// ErrFlushUnavailable and the cause, naming the keys and tables: the SQL
// side rolls back, or with FailOpenWrites commits and calls bypassLocally
// (and may then call release(committed=true) as a best effort to clear
// what other processes cached). There is nothing to release after a failed
// protect.
func (f *flusher) protect(ctx context.Context, tok token, s *flushSet) error {
	if s.empty() {
		return nil
	}
	start := f.metrics.start()
	err := f.protectAll(ctx, tok, s, false)
	f.metrics.record(ctx, "protect", start, err)
	if err == nil && f.hooks != nil {
		if f.hooks.broken == brokenFlushBeforeCommit {
			f.releaseAll(ctx, tok, s, true) // the defect: cleared before COMMIT
		}
		if f.hooks.afterProtect != nil {
			f.hooks.afterProtect()
		}
	}
	if err != nil {
		f.stats.flushFailures.Add(1)
		// Undo in the background: the caller rolls back now, and until the
		// undo lands (or the markers expire) readers merely miss.
		f.bg.Add(1)
		go func() {
			defer f.bg.Done()
			f.releaseAll(f.stopCtx, tok, s, false)
		}()
	}
	return err
}

// protectAll records tok's markers for s; refresh rewrites those already
// there, so that their TTL starts again (keepAlive).
func (f *flusher) protectAll(ctx context.Context, tok token, s *flushSet, refresh bool) error {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	targets := s.targets()
	items, err := f.cache.getMulti(ctx, targetKeys(targets))
	if err != nil {
		return fmt.Errorf("%w: recording the flush of %s: %w", ErrFlushUnavailable, s.describe(), err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(flushConcurrency)
	for _, t := range targets {
		g.Go(func() error {
			if t.table == "" {
				return f.retryCas(gctx, t.key, items[t.key], func(it *Item) error { return f.protectKey(gctx, tok, t.key, it, refresh) })
			}
			return f.retryCas(gctx, t.key, items[t.key], func(it *Item) error { return f.protectShard(gctx, tok, t.key, it, refresh) })
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("%w: recording the flush of %s: %w", ErrFlushUnavailable, s.describe(), err)
	}
	return nil
}

// retryCas runs op on the item read (it; nil when absent) until it
// succeeds, re-reading the item after each lost add or cas, at most
// maxCasAttempts times.
func (f *flusher) retryCas(ctx context.Context, key string, it *Item, op func(*Item) error) error {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// Spread out writers that collide on one key.
			pause := time.Duration(rand.Int64N(int64(attempt)*int64(100*time.Microsecond) + 1))
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("cachedsql: %s: %w", key, ctx.Err())
			case <-t.C:
			}
			items, err := f.cache.getMulti(ctx, []string{key})
			if err != nil {
				return fmt.Errorf("cachedsql: %s: %w", key, err)
			}
			it = items[key]
		}
		err := op(it)
		switch {
		case err == nil:
			return nil
		case !lostRace(err):
			return fmt.Errorf("cachedsql: %s: %w", key, err)
		case attempt+1 >= maxCasAttempts:
			return fmt.Errorf("cachedsql: %s: %d concurrent changes in a row: %w", key, maxCasAttempts, err)
		}
	}
}

// lostRace reports whether err means the item changed under a conditional
// store: re-read and try again.
func lostRace(err error) bool {
	return errors.Is(err, ErrCASConflict) || errors.Is(err, ErrNotStored) || errors.Is(err, ErrCacheMiss)
}

// protectKey adds tok to the tombstone of key, which held it (nil: absent),
// or with refresh rewrites a tombstone that holds it already.
func (f *flusher) protectKey(ctx context.Context, tok token, key string, it *Item, refresh bool) error {
	if it == nil {
		return f.cache.add(ctx, &Item{Key: key, Value: tombstoneValue(tok), TTL: f.markerTTL})
	}
	ts, ok := tombstoneTokens(it)
	switch {
	case !ok:
		ts = []token{tok} // an entry, a lease, CLEARED or garbage: replaced
	case slices.Contains(ts, tok):
		if !refresh {
			return nil
		}
	case len(ts) >= maxTombstoneTokens:
		return fmt.Errorf("cachedsql: %d writers in flight on one key", len(ts))
	default:
		ts = append(ts, tok)
	}
	return f.cache.compareAndSwap(ctx, &Item{Key: key, Value: tombstoneSetValue(ts), TTL: f.markerTTL, CasID: it.CasID})
}

// protectShard adds tok to the in-flight mark of generation shard key,
// which held it (nil: absent), or with refresh rewrites a mark that holds
// it already.
func (f *flusher) protectShard(ctx context.Context, tok token, key string, it *Item, refresh bool) error {
	if it == nil {
		m := genMark{gen: newGeneration(), writers: []token{tok}}
		return f.cache.add(ctx, &Item{Key: key, Value: m.value(), TTL: f.markerTTL})
	}
	m, ok := parseGenMark(it)
	switch {
	case ok && slices.Contains(m.writers, tok):
		if !refresh {
			return nil
		}
	case ok && len(m.writers) >= maxTombstoneTokens:
		return fmt.Errorf("cachedsql: %d writers in flight on one table", len(m.writers))
	case ok:
		m.writers = append(m.writers, tok)
	default:
		gen, isGen := parseGen(it)
		if !isGen {
			gen = newGeneration() // garbage: whatever was filled under it is lost anyway
		}
		m = genMark{gen: gen, writers: []token{tok}}
	}
	return f.cache.compareAndSwap(ctx, &Item{Key: key, Value: m.value(), TTL: f.markerTTL, CasID: it.CasID})
}

// release removes, after COMMIT (committed; also when COMMIT's outcome is
// unknown) or after ROLLBACK (!committed), the markers protect recorded
// for tok, clearing the keys and bumping the tables when no other writer
// holds them. It never fails the caller: the first attempt runs now, under
// FlushTimeout and whatever ctx's cancellation (the commit is done); what
// fails is retried in the background until MarkerTTL has passed, then
// logged and counted: the markers expire by themselves and force misses.
// It may also be called after a failed protect, with committed true, as a
// best effort (FailOpenWrites): it then clears what it finds.
func (f *flusher) release(ctx context.Context, tok token, s *flushSet, committed bool) {
	if s.empty() {
		return
	}
	if f.hooks != nil {
		if f.hooks.broken == brokenFlushBeforeCommit {
			return // released in protect
		}
		if f.hooks.beforeRelease != nil {
			f.hooks.beforeRelease()
		}
	}
	f.releaseAll(ctx, tok, s, committed)
}

func (f *flusher) releaseAll(ctx context.Context, tok token, s *flushSet, committed bool) {
	f.releaseUntil(ctx, tok, s, committed, time.Now().Add(f.markerTTL))
}

// releaseUnprotected releases after a commit that protect could not cover
// (FailOpenWrites): nothing stopped other processes from serving or
// filling the keys meanwhile, and entries they hold may be stale for as
// long as an entry lives, so the clears are retried until then rather
// than until the markers (there are none) expire.
func (f *flusher) releaseUnprotected(ctx context.Context, tok token, s *flushSet) {
	if s.empty() {
		return
	}
	f.releaseUntil(ctx, tok, s, true, time.Now().Add(f.bypassTTL))
}

// releaseUntil is releaseAll, retrying in the background until until.
func (f *flusher) releaseUntil(ctx context.Context, tok token, s *flushSet, committed bool, until time.Time) {
	start := f.metrics.start()
	failed, err := f.releaseOnce(context.WithoutCancel(ctx), tok, s.targets(), committed)
	f.metrics.record(ctx, "release", start, err)
	if committed {
		f.countReleased(s, failed)
	}
	if len(failed) == 0 {
		return
	}
	f.cfg.logger().Warn("cachedsql: clearing a write's cache markers failed; retrying in the background until they expire",
		"items", len(failed), "of", s.describe(), "error", err)
	f.bg.Add(1)
	go f.retryRelease(tok, failed, committed, until)
}

// countReleased counts the keys and tables of s released but those failed.
func (f *flusher) countReleased(s *flushSet, failed []flushTarget) {
	keys, tables := uint64(len(s.keys)), uint64(len(s.tables))
	seen := map[string]bool{}
	for _, t := range failed {
		if t.table == "" {
			keys--
		} else if !seen[t.table] {
			seen[t.table] = true
			tables--
		}
	}
	f.stats.flushes.Add(keys)
	f.stats.tableBumps.Add(tables)
}

// countRetried counts the keys and tables of before that a retry
// released: those not in after.
func (f *flusher) countRetried(before, after []flushTarget) {
	keys := func(ts []flushTarget) (n uint64, tables map[string]bool) {
		tables = map[string]bool{}
		for _, t := range ts {
			if t.table == "" {
				n++
			} else {
				tables[t.table] = true
			}
		}
		return n, tables
	}
	k0, t0 := keys(before)
	k1, t1 := keys(after)
	f.stats.flushes.Add(k0 - k1)
	for t := range t0 {
		if !t1[t] {
			f.stats.tableBumps.Add(1)
		}
	}
}

// retryRelease retries the release of targets until it succeeds, until
// has passed, or stop is called.
func (f *flusher) retryRelease(tok token, targets []flushTarget, committed bool, until time.Time) {
	defer f.bg.Done()
	pause := 20 * time.Millisecond
	var err error
	for len(targets) > 0 && time.Now().Add(pause).Before(until) {
		t := time.NewTimer(pause)
		select {
		case <-f.stopCtx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pause = min(2*pause, time.Second)
		f.stats.releaseRetries.Add(1)
		var failed []flushTarget
		failed, err = f.releaseOnce(f.stopCtx, tok, targets, committed)
		if committed {
			f.countRetried(targets, failed)
		}
		targets = failed
	}
	if len(targets) > 0 {
		f.stats.flushFailures.Add(1)
		f.cfg.logger().Warn("cachedsql: gave up clearing a write's cache markers; they expire by themselves, forcing misses",
			"items", len(targets), "first", targets[0].key, "error", err)
	}
}

// releaseOnce releases targets once, concurrently, under FlushTimeout,
// and returns those that failed and one of their errors.
func (f *flusher) releaseOnce(ctx context.Context, tok token, targets []flushTarget, committed bool) ([]flushTarget, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	items, err := f.cache.getMulti(ctx, targetKeys(targets))
	if err != nil {
		return targets, err
	}
	var (
		mu      sync.Mutex // protects failed and lastErr
		failed  []flushTarget
		lastErr error
	)
	var g errgroup.Group
	g.SetLimit(flushConcurrency)
	for _, t := range targets {
		g.Go(func() error {
			var err error
			if t.table == "" {
				err = f.retryCas(ctx, t.key, items[t.key], func(it *Item) error { return f.releaseKey(ctx, tok, t.key, it, committed) })
			} else {
				err = f.retryCas(ctx, t.key, items[t.key], func(it *Item) error { return f.releaseShard(ctx, tok, t.key, it, committed) })
			}
			if err != nil {
				mu.Lock()
				failed, lastErr = append(failed, t), err
				mu.Unlock()
			}
			return nil
		})
	}
	g.Wait()
	return failed, lastErr
}

// releaseKey removes tok from the tombstone of key, which held it (nil:
// absent), and clears what a committed writer must.
func (f *flusher) releaseKey(ctx context.Context, tok token, key string, it *Item, committed bool) error {
	if it == nil {
		return nil // our tombstone expired, and nothing was filled since
	}
	if ts, ok := tombstoneTokens(it); ok {
		rest := slices.DeleteFunc(slices.Clone(ts), func(t token) bool { return t == tok })
		if f.hooks != nil && f.hooks.broken == brokenClearOthers && committed {
			rest = nil // the defect: every writer's tombstone goes with ours
		}
		switch {
		case len(rest) == len(ts):
			return nil // another writer's: it clears it, or it expires
		case len(rest) > 0:
			return f.cache.compareAndSwap(ctx, &Item{Key: key, Value: tombstoneSetValue(rest), TTL: f.markerTTL, CasID: it.CasID})
		}
		return f.cache.compareAndSwap(ctx, &Item{Key: key, Value: clearedValue(), TTL: f.markerTTL, CasID: it.CasID})
	}
	if st, _ := stateOf(it); !committed || st == stateCleared {
		return nil
	}
	// Our tombstone is gone (expired, evicted) and an entry or a lease is
	// there: it may hold, or be about to hold, a row read before COMMIT.
	return f.cache.compareAndSwap(ctx, &Item{Key: key, Value: clearedValue(), TTL: f.markerTTL, CasID: it.CasID})
}

// releaseShard removes tok from the in-flight mark of generation shard
// key, which held it (nil: absent), and bumps the generation when the last
// writer leaves or a committed writer's mark was lost.
func (f *flusher) releaseShard(ctx context.Context, tok token, key string, it *Item, committed bool) error {
	if it == nil {
		return nil // the next reader starts a new random generation
	}
	m, ok := parseGenMark(it)
	if !ok {
		if !committed {
			return nil
		}
		// "G" without our mark: it expired, and a reader restarted the
		// generation, maybe filling rows read before COMMIT. Or garbage.
		return f.cache.compareAndSwap(ctx, &Item{Key: key, Value: genValue(newGeneration()), CasID: it.CasID})
	}
	rest := slices.DeleteFunc(slices.Clone(m.writers), func(t token) bool { return t == tok })
	if len(rest) == len(m.writers) {
		// Another writer's mark: it bumps when it leaves, or the mark
		// expires. Make sure its leaving bumps even if it rolls back.
		if !committed || m.dirty {
			return nil
		}
		m.dirty = true
		return f.cache.compareAndSwap(ctx, &Item{Key: key, Value: m.value(), TTL: f.markerTTL, CasID: it.CasID})
	}
	m.dirty = m.dirty || committed
	if len(rest) > 0 {
		m.writers = rest
		return f.cache.compareAndSwap(ctx, &Item{Key: key, Value: m.value(), TTL: f.markerTTL, CasID: it.CasID})
	}
	gen := m.gen
	if m.dirty {
		gen = newGeneration() // the bump; never the old one again
	}
	return f.cache.compareAndSwap(ctx, &Item{Key: key, Value: genValue(gen), CasID: it.CasID})
}

// flushNow flushes s for a write made outside cachedsql (FlushKey,
// FlushRow, FlushTable): protect and release in one go. The error wraps
// ErrFlushUnavailable when the markers could not be recorded; the clear is
// still attempted (and retried) as a best effort.
func (f *flusher) flushNow(ctx context.Context, s *flushSet) error {
	if s.empty() {
		return nil
	}
	tok := newToken()
	err := f.protectAll(ctx, tok, s, false)
	if err != nil {
		f.stats.flushFailures.Add(1)
	}
	f.releaseAll(ctx, tok, s, true)
	return err
}

// bypassLocally makes this process neither serve nor fill tables from the
// cache until every entry cached before now has expired: for writes
// committed without a recorded flush (FailOpenWrites).
func (f *flusher) bypassLocally(tables []string) {
	until := time.Now().Add(f.bypassTTL).UnixNano()
	for _, t := range tables {
		f.bypass.Store(t, until)
	}
}

// bypassed reports whether table is bypassed locally (bypassLocally).
// Cheap: one map lookup, on a map that is almost always empty.
func (f *flusher) bypassed(table string) bool {
	v, ok := f.bypass.Load(table)
	if !ok {
		return false
	}
	if time.Now().UnixNano() < v.(int64) {
		return true
	}
	f.bypass.CompareAndDelete(table, v)
	return false
}

// close stops background retries (tests; a process that exits loses them
// anyway, and the markers expire).
func (f *flusher) close() {
	f.stop()
	f.bg.Wait()
	if f.detachMetrics != nil {
		f.detachMetrics()
	}
}
