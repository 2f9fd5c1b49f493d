package cachedsql

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"
)

// Connector is a caching driver.Connector for sql.OpenDB. It wraps another
// connector; it holds the validated Config and the state its pool shares.
type Connector struct {
	base   driver.Connector
	driver *Driver // returned by Driver(); owns the counters
	cfg    Config  // validated copy; never written after construction
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
	return &Connector{base: base, driver: d, cfg: cfg}
}

// Connect opens a connection through the wrapped connector.
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	inner, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return newConn(inner, c), nil
}

// Driver returns the caching driver; its Open wraps the same driver.
func (c *Connector) Driver() driver.Driver { return c.driver }

// Close closes the wrapped connector if it is an io.Closer; sql.DB.Close
// calls it.
func (c *Connector) Close() error {
	if cl, ok := c.base.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// Stats returns this connector's counters. A connector made by a Driver
// (sql.Open) shares them with every other pool of that Driver.
func (c *Connector) Stats() Stats { return c.driver.stats.snapshot() }
