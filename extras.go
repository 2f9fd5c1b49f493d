package cachedsql

import (
	"context"
	"database/sql/driver"
)

// A few driver interfaces change database/sql's behaviour by their mere
// presence: SessionResetter and Validator together keep a connection after
// a failed rollback (keepConnOnRollback), and a Stmt's ColumnConverter
// changes argument conversion. The wrapper exposes each only when the
// wrapped driver has it, through these few shapes.

// sessionResetter forwards to conn.resetSession, which also clears the
// wrapper's per-session state.
type sessionResetter struct{ c *conn }

func (r sessionResetter) ResetSession(ctx context.Context) error { return r.c.resetSession(ctx) }

func withConnExtras(c *conn) driver.Conn {
	_, resets := c.inner.(driver.SessionResetter)
	validator, validates := c.inner.(driver.Validator)
	switch {
	case resets && validates:
		return struct {
			*conn
			driver.SessionResetter
			driver.Validator
		}{c, sessionResetter{c}, validator}
	case resets:
		return struct {
			*conn
			driver.SessionResetter
		}{c, sessionResetter{c}}
	case validates:
		return struct {
			*conn
			driver.Validator
		}{c, validator}
	default:
		return c
	}
}

// columnConverter is driver.ColumnConverter under another name: an embedded
// field named ColumnConverter would shadow the method it should promote, and
// the struct would not implement driver.ColumnConverter.
type columnConverter interface {
	ColumnConverter(idx int) driver.ValueConverter
}

func withStmtExtras(s *stmt) driver.Stmt {
	if cc, ok := s.inner.(driver.ColumnConverter); ok {
		return struct {
			*stmt
			columnConverter
		}{s, cc}
	}
	return s
}
