package cachedsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"slices"
	"sync"
)

// DriverName is the name init registers: a caching driver wrapping pgx,
// configured from the environment (see the package documentation).
const DriverName = "cachedsql"

func init() {
	sql.Register(DriverName, &Driver{env: true, stats: new(counters)})
}

// Driver is a caching database/sql driver that wraps another registered
// driver. It implements driver.DriverContext, so database/sql parses each
// DSN once per pool.
type Driver struct {
	// env marks the driver init registers: its Config is read from the
	// environment at the first Open, so a program can set the variables
	// in main before opening a pool.
	env     bool
	envOnce sync.Once
	envCfg  Config // written once under envOnce
	envErr  error  // written once under envOnce

	cfg   Config    // validated; never written after Register
	stats *counters // shared by every pool this driver opens

	mu         sync.Mutex    // protects inner and connectors
	inner      driver.Driver // the wrapped driver, found at the first Open
	connectors []*Connector  // every pool opened, for the Flush functions
}

// Register makes a caching driver available to sql.Open under name. It
// wraps the driver registered as cfg.Driver ("pgx" when empty), which must
// already be registered. It returns an error, never panics: when cfg is
// invalid, the wrapped driver is unknown or name is taken.
func Register(name string, cfg Config) (*Driver, error) {
	vcfg, err := cfg.validated()
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("%w: Register: empty driver name", ErrConfig)
	}
	if name == vcfg.Driver {
		return nil, fmt.Errorf("%w: Register(%q): a driver cannot wrap itself", ErrConfig, name)
	}
	if err := checkRegistered(vcfg.Driver); err != nil {
		return nil, err
	}
	d := &Driver{cfg: vcfg, stats: new(counters)}
	if err := register(name, d); err != nil {
		return nil, err
	}
	warnIfNoCache(&vcfg)
	return d, nil
}

// register calls sql.Register, turning its panic on a duplicate name into an
// error; the check before it cannot close the race with other registrants.
func register(name string, d driver.Driver) (err error) {
	if slices.Contains(sql.Drivers(), name) {
		return fmt.Errorf("%w: Register: a driver named %q is already registered", ErrConfig, name)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: Register(%q): %v", ErrConfig, name, r)
		}
	}()
	sql.Register(name, d)
	return nil
}

func checkRegistered(name string) error {
	if !slices.Contains(sql.Drivers(), name) {
		return fmt.Errorf("%w %q: import it first (for pgx: _ \"github.com/jackc/pgx/v5/stdlib\"); registered: %v",
			ErrUnknownDriver, name, sql.Drivers())
	}
	return nil
}

// Open opens one connection. database/sql calls OpenConnector instead; Open
// is here for callers of the driver.Driver interface.
func (d *Driver) Open(dsn string) (driver.Conn, error) {
	c, err := d.OpenConnector(dsn)
	if err != nil {
		return nil, err
	}
	return c.Connect(context.Background())
}

// OpenConnector implements driver.DriverContext: one Connector per pool,
// wrapping the wrapped driver's own connector for dsn.
func (d *Driver) OpenConnector(dsn string) (driver.Connector, error) {
	cfg, err := d.config()
	if err != nil {
		return nil, err
	}
	inner, err := d.innerDriver(cfg.Driver, dsn)
	if err != nil {
		return nil, err
	}
	var base driver.Connector
	if dc, ok := inner.(driver.DriverContext); ok {
		if base, err = dc.OpenConnector(dsn); err != nil {
			return nil, err
		}
	} else {
		base = dsnConnector{dsn: dsn, driver: inner}
	}
	c := newConnector(base, d, cfg)
	d.mu.Lock()
	d.connectors = append(d.connectors, c)
	d.mu.Unlock()
	return c, nil
}

// Stats returns the counters of every pool opened through this driver.
func (d *Driver) Stats() Stats { return d.stats.snapshot() }

func (d *Driver) config() (Config, error) {
	if !d.env {
		return d.cfg, nil
	}
	d.envOnce.Do(func() {
		d.envCfg, d.envErr = configFromEnv()
		if d.envErr == nil {
			warnIfNoCache(&d.envCfg)
		}
	})
	return d.envCfg, d.envErr
}

// innerDriver finds the wrapped driver. database/sql exposes a registered
// driver only through a DB, so open one (it connects to nothing) with the
// first DSN and keep its driver.
func (d *Driver) innerDriver(name, dsn string) (driver.Driver, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inner != nil {
		return d.inner, nil
	}
	if err := checkRegistered(name); err != nil {
		return nil, err
	}
	db, err := sql.Open(name, dsn)
	if err != nil {
		return nil, fmt.Errorf("cachedsql: opening wrapped driver %q: %w", name, err)
	}
	d.inner = db.Driver()
	db.Close()
	return d.inner, nil
}

// dsnConnector is database/sql's own fallback for drivers without
// DriverContext: every connection opens the same DSN.
type dsnConnector struct {
	dsn    string
	driver driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.driver }

func warnIfNoCache(cfg *Config) {
	if cfg.Cache == nil && len(cfg.Rules.Tables) > 0 {
		cfg.logger().Warn("cachedsql: rules are configured but Config.Cache is nil: nothing will be cached",
			"tables", len(cfg.Rules.Tables))
	}
}
