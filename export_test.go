package cachedsql

import (
	"database/sql/driver"
	"time"
)

// Test hooks and accessors for the external test package (cachedsql_test).
// Nothing here changes behaviour outside tests.

// SetFillHooks installs the filler's test hooks on c: beforeQuery runs in a
// flight's leader after it holds its lease, before it closes the flight and
// queries the database; beforeCas runs after the database read, before the
// cas that stores the result. Either may be nil. Call it before c serves
// any lookup. A broken variant already set (SetBrokenVariant) is kept.
func SetFillHooks(c *Connector, beforeQuery, beforeCas func(entryKey string)) {
	if c.filler == nil {
		panic("SetFillHooks: connector has no cache")
	}
	if c.filler.hooks == nil {
		c.filler.hooks = &fillHooks{}
	}
	c.filler.hooks.beforeQuery = beforeQuery
	c.filler.hooks.beforeCas = beforeCas
}

// LookupKeys returns the entry key and generation key a lookup of query
// with args would use, as the connector's pool computes them. ok is false
// when query is not a cacheable lookup or the pool has not read its catalog
// yet (open one connection first).
func LookupKeys(c *Connector, query string, args ...any) (entryKey, genKey string, ok bool) {
	pl := c.planner.Load()
	if pl == nil {
		return "", "", false
	}
	p := pl.plan(query)
	if p.lookup == nil {
		return "", "", false
	}
	nv := make([]driver.NamedValue, len(args))
	for i, a := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	cn := &conn{cn: c, pl: pl}
	l, ok := cn.resolveLookup(p.lookup, nv)
	if !ok {
		return "", "", false
	}
	return l.entryKey, l.genKey, true
}

// LeaseValue is the value of a lease item held by a filler that is not
// in this process (a fresh random token).
func LeaseValue() []byte { return leaseValue(newToken()) }

// GenValue is the value of a generation item holding gen.
func GenValue(gen string) []byte { return genValue(gen) }

// NewMemoryCacheClock is NewMemoryCache with a replaceable clock, so tests
// can let items expire without sleeping. now must be safe for concurrent
// use.
func NewMemoryCacheClock(maxBytes int64, now func() time.Time) Cache {
	m := NewMemoryCache(maxBytes).(*memoryCache)
	m.now = now
	return m
}

// BrokenVariant names a deliberately broken protocol for the consistency
// checker's self-tests (SetBrokenVariant).
type BrokenVariant = brokenVariant

// The broken variants: each must make the checker report violations.
const (
	BrokenNone              = brokenNone
	BrokenPlainSet          = brokenPlainSet
	BrokenFlushBeforeCommit = brokenFlushBeforeCommit
	BrokenLateJoin          = brokenLateJoin
	BrokenClearOthers       = brokenClearOthers
	BrokenMergeOldGen       = brokenMergeOldGen
)

// SetBrokenVariant makes c run broken protocol v (tests of the checker
// only), keeping any hooks already installed. Call it before c serves
// anything.
func SetBrokenVariant(c *Connector, v BrokenVariant) {
	if c.filler == nil || c.flusher == nil {
		panic("SetBrokenVariant: connector has no cache")
	}
	if c.filler.hooks == nil {
		c.filler.hooks = &fillHooks{}
	}
	c.filler.hooks.broken = v
	if c.flusher.hooks == nil {
		c.flusher.hooks = &flushHooks{}
	}
	c.flusher.hooks.broken = v
}

// SetFlushHooks installs the flusher's test hooks on c, keeping its broken
// variant: afterProtect runs after a write's markers are recorded, before
// COMMIT; beforeRelease after COMMIT, before they are cleared. Either may
// be nil. Call it before c serves anything.
func SetFlushHooks(c *Connector, afterProtect, beforeRelease func()) {
	if c.flusher == nil {
		panic("SetFlushHooks: connector has no cache")
	}
	if c.flusher.hooks == nil {
		c.flusher.hooks = &flushHooks{}
	}
	c.flusher.hooks.afterProtect = afterProtect
	c.flusher.hooks.beforeRelease = beforeRelease
}

// WaitBackground waits for c's background releases (retries and settles
// of broken sessions) to finish.
func WaitBackground(c *Connector) { c.flusher.bg.Wait() }
