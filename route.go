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

// inTx reports whether the session has an open transaction, begun through
// database/sql or with SQL text.
func (c *conn) inTx() bool { return c.tx != nil || c.textTx }

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
	end, wasInTx := endsTx(p.stmt), c.inTx()
	c.observe(p.stmt)
	switch {
	case end == txEndCommit && wasInTx && !c.pending.empty():
		var res driver.Result
		err := c.commitPending(ctx, func() error {
			var err error
			res, err = r.exec(ctx)
			return err
		}, func() { r.c.passExec(ctx, "ROLLBACK", nil) })
		return res, err
	case end == txEndRollback:
		c.pending = nil
	}
	w := p.write.forArgs(r.args)
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
	end, wasInTx := endsTx(p.stmt), c.inTx()
	c.observe(p.stmt)
	switch {
	case end == txEndCommit && wasInTx && !c.pending.empty():
		var rows driver.Rows
		err := c.commitPending(ctx, func() error {
			var err error
			rows, err = r.queryRows(ctx)
			return err
		}, func() { r.c.passExec(ctx, "ROLLBACK", nil) })
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
	w := p.write.forArgs(r.args)
	if !w.needed() {
		return r.queryRows(ctx)
	}
	return c.queryWrite(ctx, w, r, wasInTx)
}
