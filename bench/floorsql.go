package bench

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"time"
)

// The floor through database/sql (contender c3): a driver whose query is
// one gomemcache Get of the entry cachedsql stored for the id, answered
// with the row's five values ready-made, decoding nothing. It is what any
// cache behind database/sql must pay at least; b/c3 is what cachedsql
// adds to it (the generation shard, decoding, replay, keys).

// floorConnector opens floor connections over e's memcached client.
type floorConnector struct {
	e     *Env
	names []string // index id: the name column, made once
}

func newFloorDB(e *Env) *sql.DB {
	c := &floorConnector{e: e, names: make([]string, e.Cfg.Rows+1)}
	for id := 1; id <= e.Cfg.Rows; id++ {
		c.names[id] = name(id)
	}
	return e.track(sql.OpenDB(c))
}

func (c *floorConnector) Connect(context.Context) (driver.Conn, error) {
	return &floorConn{c: c}, nil
}

func (c *floorConnector) Driver() driver.Driver { return floorDriver{} }

type floorDriver struct{}

func (floorDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("bench: the floor driver opens through its connector")
}

// floorConn answers lookups by id only. Its rows value is reused from
// query to query, as database/sql closes one before the next starts.
type floorConn struct {
	c    *floorConnector
	rows floorRows
}

var errFloorOnly = errors.New("bench: the floor driver only answers lookups by id")

func (*floorConn) Prepare(string) (driver.Stmt, error) { return nil, errFloorOnly }
func (*floorConn) Close() error                        { return nil }
func (*floorConn) Begin() (driver.Tx, error)           { return nil, errFloorOnly }

// floorCreated is every row's created_at: the floor reads no column.
var floorCreated = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (fc *floorConn) QueryContext(_ context.Context, _ string, args []driver.NamedValue) (driver.Rows, error) {
	e := fc.c.e
	id, ok := args[0].Value.(int64)
	if len(args) != 1 || !ok || id < 1 || int(id) >= len(e.entryByID) {
		return nil, errFloorOnly
	}
	it, err := e.mc.Get(e.entryByID[id])
	if err != nil {
		return nil, fmt.Errorf("bench: floor: %w", err)
	}
	if len(it.Value) == 0 {
		return nil, errors.New("bench: floor: empty entry")
	}
	fc.rows = floorRows{row: [5]driver.Value{id, e.emails[id], fc.c.names[id], bio, floorCreated}}
	return &fc.rows, nil
}

var floorColumns = []string{"id", "email", "name", "bio", "created_at"}

// floorRows is one ready-made row.
type floorRows struct {
	row  [5]driver.Value
	done bool
}

func (r *floorRows) Columns() []string { return floorColumns }
func (r *floorRows) Close() error      { r.done = true; return nil }

func (r *floorRows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	copy(dest, r.row[:])
	return nil
}
