package cachedsql

import (
	"context"
	"database/sql/driver"

	"github.com/cachedsql/cachedsql/parser"
)

// The one path every planned statement takes, from Conn and Stmt alike:
// a transaction end flushes what the transaction wrote; a cacheable lookup
// goes through the cache; a write records or performs its flush; anything
// else passes through untouched.

// inTx reports whether the session has an open transaction: begun through
// database/sql, or else as the server reports it on pgx (BEGIN and COMMIT
// anywhere in any text count, whether they succeeded or not), or as
// tracked from SQL text on other drivers.
func (c *conn) inTx() bool {
	if c.tx != nil {
		return true
	}
	if pc := c.pgxConn(); pc != nil {
		return pc.PgConn().TxStatus() != 'I'
	}
	return c.textTx
}

// bumpAllPlan is what a write flushes on a session whose name resolution
// is its own (SET search_path, SET ROLE): the pool's plans resolved its
// tables for another search_path, so every cached table is bumped.
var bumpAllPlan = &writePlan{bumpAll: true, reason: "the session changed search_path or role"}

// writeFor is p's write plan for this call: adapted to its arguments, and
// widened on a session whose names resolve differently.
func (c *conn) writeFor(p *plan, args []driver.NamedValue) *writePlan {
	w := p.write.forArgs(args)
	if c.sessionChanged && w.needed() {
		return bumpAllPlan
	}
	return w
}

// txEnd says how a statement ends the session's transaction.
type txEnd uint8

const (
	txEndNone     txEnd = iota
	txEndCommit         // COMMIT, END, PREPARE TRANSACTION (flushed as if committed)
	txEndRollback       // ROLLBACK, ABORT
)

func endsTx(st *parser.Statement) txEnd {
	switch st.Kind {
	case parser.TxControl:
		switch st.Tx.Op {
		case parser.TxCommit, parser.TxPrepare:
			return txEndCommit
		case parser.TxRollback:
			return txEndRollback
		}
	case parser.Multi:
		end := txEndNone
		for i := range st.Parts {
			if e := endsTx(&st.Parts[i]); e == txEndCommit {
				return txEndCommit // whatever else it does, keys must be protected first
			} else if e != txEndNone {
				end = e
			}
		}
		return end
	}
	return txEndNone
}

// runner executes the statement as the caller sent it: through the
// prepared statement it came from, or directly on the connection.
type runner struct {
	c     *conn
	si    *stmt
	query string
	args  []driver.NamedValue
}

func (r runner) exec(ctx context.Context) (driver.Result, error) {
	if r.si != nil {
		return r.si.innerExec(ctx, r.args)
	}
	return r.c.passExec(ctx, r.query, r.args)
}

func (r runner) queryRows(ctx context.Context) (driver.Rows, error) {
	if r.si != nil {
		return r.si.innerQuery(ctx, r.args)
	}
	return r.c.passQuery(ctx, r.query, r.args)
}

// execPlanned runs an Exec of a planned statement: transaction ends are
// where the open transaction's flushes happen; writes record or perform
// theirs.
func (c *conn) execPlanned(ctx context.Context, p *plan, r runner) (driver.Result, error) {
	w := c.writeFor(p, r.args)
	end, wasInTx := endsTx(p.stmt), c.inTx()
	c.observe(p.stmt)
	switch {
	case end == txEndCommit && (wasInTx || w.needed()):
		var res driver.Result
		err := c.commitText(ctx, w, func() error {
			var err error
			res, err = r.exec(ctx)
			return err
		})
		return res, err
	case end == txEndRollback:
		c.pending = nil
	}
	if !w.needed() {
		return r.exec(ctx)
	}
	if wasInTx {
		return c.writeInTx(ctx, w, r)
	}
	return c.writeAutocommit(ctx, w, r)
}

// queryPlanned is execPlanned for a Query: a write's rows are the
// statement's, wrapped so its flush happens when they are drained.
func (c *conn) queryPlanned(ctx context.Context, p *plan, r runner) (driver.Rows, error) {
	w := c.writeFor(p, r.args)
	end, wasInTx := endsTx(p.stmt), c.inTx()
	c.observe(p.stmt)
	switch {
	case end == txEndCommit && (wasInTx || w.needed()):
		var rows driver.Rows
		err := c.commitText(ctx, w, func() error {
			var err error
			rows, err = r.queryRows(ctx)
			return err
		})
		return rows, err
	case end == txEndRollback:
		c.pending = nil
	}
	if p.lookup != nil {
		rows, handled, err := c.serveLookup(ctx, p.lookup, r.query, r.args, r.si)
		if handled {
			return rows, err
		}
	}
	if !w.needed() {
		return r.queryRows(ctx)
	}
	return c.queryWrite(ctx, w, r, wasInTx)
}

// commitText runs a statement that commits (COMMIT, END, PREPARE
// TRANSACTION, or a string with one of them among other statements). The
// open transaction's flush set and the statement's own, which may write
// before or after its COMMIT, are protected before it runs and released
// after. Text after the COMMIT may have begun a transaction and written in
// it ("COMMIT; BEGIN; UPDATE ..."): then the statement's flush comes again
// when that transaction commits.
func (c *conn) commitText(ctx context.Context, w *writePlan, run func() error) error {
	var own *flushSet
	if w.needed() {
		own = c.newFlushSet(w)
		c.addPending(c.newFlushSet(w))
	}
	err := c.commitPending(ctx, run, func() { c.passExec(ctx, "ROLLBACK", nil) })
	if own != nil && c.inTx() {
		c.addPending(own)
	}
	return err
}
