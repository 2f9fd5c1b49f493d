package cachedsql

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// Connector is a caching driver.Connector for sql.OpenDB. It wraps another
// connector; it holds the validated Config and the state its pool shares.
type Connector struct {
	base    driver.Connector
	driver  *Driver  // returned by Driver(); owns the counters
	cfg     Config   // validated copy; never written after construction
	filler  *filler  // nil when there is no cache: everything passes through
	flusher *flusher // nil exactly when filler is

	// planner holds the catalog, read by the first connection that
	// succeeds; nil until then, and always nil without a cache.
	planner atomic.Pointer[planner]
	loading sync.Mutex // serialises catalog reads, so one connection does it
}

// NewConnector wraps base, which may come from any driver (pgx's
// stdlib.GetConnector, go-sqlmock, ...), for use with sql.OpenDB. Nothing is
// registered globally. cfg.Driver is ignored.
func NewConnector(base driver.Connector, cfg Config) (*Connector, error) {
	if base == nil {
		return nil, fmt.Errorf("%w: NewConnector: nil base connector", ErrConfig)
	}
	vcfg, err := cfg.validated()
	if err != nil {
		return nil, err
	}
	warnIfNoCache(&vcfg)
	d := &Driver{cfg: vcfg, stats: new(counters), inner: base.Driver()}
	return newConnector(base, d, vcfg), nil
}

func newConnector(base driver.Connector, d *Driver, cfg Config) *Connector {
	c := &Connector{base: base, driver: d, cfg: cfg}
	if cfg.Cache != nil && len(cfg.Rules.Tables) > 0 {
		g := newGuard(cfg.Cache, cfg.cacheTimeout(), d.stats)
		c.filler = &filler{cache: g, stats: d.stats, wait: cfg.leaseWait(), cfg: &c.cfg}
		c.flusher = newFlusher(g, d.stats, &c.cfg)
	}
	return c
}

// Connect opens a connection through the wrapped connector. The pool's
// first connection reads the catalog; if the rules do not match the
// database, Connect fails, naming the table and the problem.
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	inner, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	pl, err := c.plannerFor(ctx, inner)
	if err != nil {
		inner.Close()
		return nil, err
	}
	return newConn(inner, c, pl), nil
}

// plannerFor returns the pool's planner, reading the catalog through inner
// if no connection has yet. A failed read is retried by the next Connect.
func (c *Connector) plannerFor(ctx context.Context, inner driver.Conn) (*planner, error) {
	if c.filler == nil {
		return nil, nil
	}
	if pl := c.planner.Load(); pl != nil {
		return pl, nil
	}
	c.loading.Lock()
	defer c.loading.Unlock()
	if pl := c.planner.Load(); pl != nil {
		return pl, nil
	}
	dialect, _ := detectDialect(inner)
	cat, err := loadCatalog(ctx, inner, dialect, &c.cfg)
	if err != nil {
		return nil, err
	}
	pl := newPlanner(cat, &c.cfg.Rules)
	pl.logger = c.cfg.Logger
	c.planner.Store(pl)
	return pl, nil
}

// Driver returns the caching driver; its Open wraps the same driver.
func (c *Connector) Driver() driver.Driver { return c.driver }

// Close closes the wrapped connector if it is an io.Closer; sql.DB.Close
// calls it.
func (c *Connector) Close() error {
	c.driver.forget(c)
	if c.flusher != nil {
		c.flusher.close()
	}
	if cl, ok := c.base.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// Stats returns this connector's counters. A connector made by a Driver
// (sql.Open) shares them with every other pool of that Driver.
func (c *Connector) Stats() Stats { return c.driver.stats.snapshot() }
