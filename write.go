package cachedsql

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// The SQL side of the write protocol (design brief §2, Write): find what a
// statement changes, protect those keys and tables in the cache before its
// transaction commits, release them after. An autocommit write on a cached
// table runs in a transaction of its own, so that its protection is in
// place before it becomes visible.

// writeInTx runs a write inside the session's transaction and adds what it
// touched to the transaction's flush set.
func (c *conn) writeInTx(ctx context.Context, w *writePlan, r runner) (driver.Result, error) {
	set := c.newFlushSet(w)
	if w.returning == nil {
		res, err := r.exec(ctx)
		c.addPending(set) // even on error: the statement may have written
		return res, err
	}
	n, err := c.runReturning(ctx, w.returning, r, set)
	c.addPending(set)
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(n), nil
}

// writeAutocommit runs an autocommit write so that its flush is recorded
// before it commits.
func (c *conn) writeAutocommit(ctx context.Context, w *writePlan, r runner) (driver.Result, error) {
	set := c.newFlushSet(w)
	if w.returning == nil {
		// The tables are known before the statement runs: protect them
		// first, and the statement's own commit needs nothing around it.
		release, err := c.protect(ctx, set, func() {})
		if err != nil {
			return nil, err
		}
		res, err := r.exec(ctx)
		c.releaseAfter(err, release)
		c.flushAgainIfOpened(set)
		return res, err
	}
	itx, err := c.beginImplicit(ctx)
	if err != nil {
		return nil, err
	}
	n, err := c.runReturning(ctx, w.returning, r, set)
	if err != nil {
		itx.Rollback()
		return nil, err
	}
	release, err := c.protect(ctx, set, func() { itx.Rollback() })
	if err != nil {
		return nil, err
	}
	err = itx.Commit()
	c.releaseAfter(err, release) // also when the outcome is unknown
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(n), nil
}

// runReturning runs the pre-read (if any) and the statement with its key
// columns returned, adding every key it saw to set. It returns the number
// of rows the statement wrote.
func (c *conn) runReturning(ctx context.Context, rp *returningPlan, r runner, set *flushSet) (int64, error) {
	pre, err := c.preRead(ctx, rp, r, set)
	if err != nil {
		return 0, err
	}
	var n int64
	err = c.eachRow(ctx, rp.query, r.args, func(vals []driver.Value) {
		n++
		c.addReturnedKeys(set, rp, pre, vals[len(vals)-len(rp.keyCols):])
	})
	return n, err
}

// preReadRows are the rows a pre-read locked, by primary key; nil when
// the statement needs no pre-read.
type preReadRows map[string]struct{}

// preRead reads and locks the old keys of the rows an UPDATE will re-key,
// adding them to set.
func (c *conn) preRead(ctx context.Context, rp *returningPlan, r runner, set *flushSet) (preReadRows, error) {
	if rp.preRead == "" {
		return nil, nil
	}
	args, ok := pickParams(r.args, rp.preReadParams)
	if !ok {
		set.addTable(c.tableGens(rp.table))
		return nil, nil
	}
	seen := preReadRows{}
	err := c.eachRow(ctx, rp.preRead, args, func(vals []driver.Value) {
		c.addRowKeys(set, rp.table, rp.keyCols, vals)
		if id, ok := primaryKeyOf(rp.table, rp.keyCols, vals); ok {
			seen[id] = struct{}{}
		}
	})
	return seen, err
}

// addReturnedKeys adds the keys of a row the statement returned. A row the
// pre-read did not lock (it came to match the WHERE in between, under READ
// COMMITTED) has old keys nobody read: the table is bumped.
func (c *conn) addReturnedKeys(set *flushSet, rp *returningPlan, pre preReadRows, vals []driver.Value) {
	c.addRowKeys(set, rp.table, rp.keyCols, vals)
	if pre == nil {
		return
	}
	if id, ok := primaryKeyOf(rp.table, rp.keyCols, vals); !ok || !pre.has(id) {
		set.addTable(c.tableGens(rp.table))
	}
}

func (p preReadRows) has(id string) bool {
	_, ok := p[id]
	return ok
}

// primaryKeyOf identifies a row of t by its first key's canonical values.
func primaryKeyOf(t *tableInfo, cols []string, vals []driver.Value) (string, bool) {
	k := t.keys[0]
	args := make([]any, len(k.cols))
	for i, kc := range k.cols {
		j := slices.Index(cols, kc.name)
		if j < 0 || vals[j] == nil {
			return "", false
		}
		args[i] = vals[j]
	}
	canon, ok := canonicalKey(k, args)
	return strings.Join(canon, "\x00"), ok
}

// eachRow runs query on the wrapped connection and calls f with each row.
func (c *conn) eachRow(ctx context.Context, query string, args []driver.NamedValue, f func([]driver.Value)) error {
	rows, err := c.queryDirect(ctx, query, args)
	if err != nil {
		return err
	}
	defer rows.Close()
	vals := make([]driver.Value, len(rows.Columns()))
	for {
		err := rows.Next(vals)
		if err == io.EOF {
			return rows.Close()
		}
		if err != nil {
			return err
		}
		f(vals)
	}
}

// queryDirect runs a statement of cachedsql's own on the wrapped
// connection, preparing it when the driver cannot query directly.
func (c *conn) queryDirect(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.queryer != nil || c.legacyQueryer != nil {
		return c.passQuery(ctx, query, args)
	}
	si, err := c.inner.Prepare(query)
	if err != nil {
		return nil, err
	}
	s := &stmt{c: c, query: query}
	s.setInner(si)
	rows, err := s.innerQuery(ctx, args)
	if err != nil {
		si.Close()
		return nil, err
	}
	return closeHook(rows, func(error) error { return si.Close() }), nil
}

// beginImplicit starts the transaction an autocommit write runs in.
func (c *conn) beginImplicit(ctx context.Context) (driver.Tx, error) {
	if c.beginner != nil {
		return c.beginner.BeginTx(ctx, driver.TxOptions{})
	}
	return c.inner.Begin()
}

// protect records set in the cache before a commit, and returns the
// release to run after it (whatever its outcome). When the cache cannot
// take it, the write is undone (rollback) and fails with
// ErrFlushUnavailable, unless FailOpenWrites lets it commit: its tables are
// then bypassed locally until their entries have expired, and the release
// keeps retrying as long.
func (c *conn) protect(ctx context.Context, set *flushSet, rollback func()) (release func(), err error) {
	f := c.cn.flusher
	tok := newToken()
	protectedAt := time.Now()
	err = f.protect(ctx, tok, set)
	switch {
	case err == nil:
		stop := f.keepAlive(tok, set, protectedAt)
		return func() {
			if lost := stop(); lost {
				// The markers may have expired while the write ran: as
				// with FailOpenWrites, entries filled meanwhile may be
				// stale for as long as an entry lives.
				f.bypassLocally(c.failOpenTables(set))
				f.releaseUnprotected(ctx, tok, set)
				return
			}
			f.release(ctx, tok, set, true)
		}, nil
	case c.cn.cfg.FailOpenWrites:
		f.bypassLocally(c.failOpenTables(set))
		c.cn.cfg.logger().Warn("cachedsql: committing a write whose flush could not be recorded (FailOpenWrites); its tables bypass the cache locally",
			"error", err)
		return func() { f.releaseUnprotected(ctx, tok, set) }, nil
	}
	rollback()
	return nil, err
}

// failOpenTables names the tables a write committed without its flush
// must bypass locally: the tables it bumps, and, when it flushes keys, every
// cached table (an entry key does not name its table: it may be hashed).
func (c *conn) failOpenTables(set *flushSet) []string {
	names := set.tableNames()
	if set.keyCount() == 0 {
		return names
	}
	for _, t := range c.pl.cat.tables {
		if n := t.qualified(); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// commitPending protects the transaction's flush set, commits, and
// releases it.
func (c *conn) commitPending(ctx context.Context, commit func() error, rollback func()) error {
	set := c.pending
	c.pending = nil
	if set.empty() {
		return commit()
	}
	release, err := c.protect(ctx, set, rollback)
	if err != nil {
		return err
	}
	err = commit()
	c.releaseAfter(err, release) // also when the outcome is unknown
	return err
}

// flushAgainIfOpened keeps set for the commit of a transaction the
// statement itself began ("BEGIN; UPDATE ..."): what it wrote becomes
// visible only then, and rows read before that may have been filled since
// the release.
func (c *conn) flushAgainIfOpened(set *flushSet) {
	if c.inTx() {
		c.addPending(set)
	}
}

func (c *conn) addPending(set *flushSet) {
	if c.pending == nil {
		c.pending = set
		return
	}
	c.pending.merge(set)
}

// newFlushSet starts the flush set of one statement with its bumps.
func (c *conn) newFlushSet(w *writePlan) *flushSet {
	set := newFlushSet()
	if w.bumpAll {
		for _, t := range c.pl.cat.tables {
			set.addTable(c.tableGens(t))
		}
		return set
	}
	for _, t := range w.bump {
		set.addTable(c.tableGens(t))
	}
	return set
}

// tableGens names a table and its generation keys, for a bump.
func (c *conn) tableGens(t *tableInfo) (string, []string) { return c.pl.tableGens(t) }

func (pl *planner) tableGens(t *tableInfo) (string, []string) {
	keys := make([]string, genBuckets)
	for b := range keys {
		keys[b] = genKey(pl.cat.namespace, t, b)
	}
	return t.qualified(), keys
}

// addRowKeys adds the entry keys of one row of t, every key of it, to set.
// vals holds the row's values of cols. A key with a NULL column cannot be
// looked up and needs no flush; a value that cannot be canonicalised, or a
// set grown past maxFlushKeys, bumps the table instead.
func (c *conn) addRowKeys(set *flushSet, t *tableInfo, cols []string, vals []driver.Value) {
	if !t.validated {
		// Without a catalog, key values keep their Go types apart, and the
		// driver's row values may not have the types lookups pass: only a
		// bump is sure to reach every entry.
		set.addTable(c.tableGens(t))
		return
	}
	for ki, k := range t.keys {
		args := make([]any, len(k.cols))
		null := false
		for i, kc := range k.cols {
			for j, name := range cols {
				if name == kc.name {
					args[i] = vals[j]
				}
			}
			null = null || args[i] == nil
		}
		if null {
			continue
		}
		canon, ok := canonicalKey(k, args)
		if !ok || set.keyCount() >= maxFlushKeys {
			set.addTable(c.tableGens(t))
			return
		}
		set.addKey(entryKey(c.pl.cat.namespace, t, ki, canon))
	}
}

// pickParams selects the arguments a pre-read binds, renumbered.
func pickParams(args []driver.NamedValue, params []int) ([]driver.NamedValue, bool) {
	args, ok := stripPgxOptions(args)
	if !ok {
		return nil, false
	}
	out := make([]driver.NamedValue, len(params))
	for i, p := range params {
		if p < 1 || p > len(args) || args[p-1].Name != "" {
			return nil, false
		}
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: args[p-1].Value}
	}
	return out, true
}

// errWriteRows wraps errors that surface when a write's rows end.
func errWriteRows(err error) error {
	if err == nil || errors.Is(err, ErrFlushUnavailable) {
		return err
	}
	return fmt.Errorf("cachedsql: finishing a write: %w", err)
}
