package cachedsql

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoRule is returned by the Flush functions for a table or key that no
// rule declares.
var ErrNoRule = errors.New("cachedsql: no rule")

// FlushKey invalidates one cached key of table, for a write made outside
// cachedsql (psql, a migration, another service). rule names the key as
// the rules list its columns, "id" or "org_id,slug"; values follow that
// order. A value that cannot be canonicalised flushes the whole table.
func (c *Connector) FlushKey(ctx context.Context, table, rule string, values ...any) error {
	return c.flush(ctx, "FlushKey", table, func(pl *planner, t *tableInfo, set *flushSet) error {
		i, ok := t.rule.keyIndex(rule)
		if !ok {
			return fmt.Errorf("%w: FlushKey: table %s has no key %q", ErrNoRule, t.qualified(), rule)
		}
		if len(values) != len(t.keys[i].cols) {
			return fmt.Errorf("cachedsql: FlushKey: key %s of %s has %d columns; got %d values", t.keys[i].name, t.qualified(), len(t.keys[i].cols), len(values))
		}
		canon, ok := canonicalKey(t.keys[i], values)
		if !ok {
			set.addTable(pl.tableGens(t))
			return nil
		}
		set.addKey(entryKey(pl.cat.namespace, t, i, canon))
		return nil
	})
}

// FlushRow invalidates every cached key of one row of table, given the
// row's values by column name (at least the columns of every key). A key
// whose columns are missing, or whose values cannot be canonicalised,
// flushes the whole table.
func (c *Connector) FlushRow(ctx context.Context, table string, row map[string]any) error {
	return c.flush(ctx, "FlushRow", table, func(pl *planner, t *tableInfo, set *flushSet) error {
		for i, k := range t.keys {
			vals := make([]any, len(k.cols))
			for j, col := range k.cols {
				v, ok := row[col.name]
				if !ok {
					set.addTable(pl.tableGens(t))
					return nil
				}
				vals[j] = v
			}
			canon, ok := canonicalKey(k, vals)
			if !ok {
				set.addTable(pl.tableGens(t))
				return nil
			}
			set.addKey(entryKey(pl.cat.namespace, t, i, canon))
		}
		return nil
	})
}

// FlushTable invalidates everything cached for table.
func (c *Connector) FlushTable(ctx context.Context, table string) error {
	return c.flush(ctx, "FlushTable", table, func(pl *planner, t *tableInfo, set *flushSet) error {
		set.addTable(pl.tableGens(t))
		return nil
	})
}

// flush resolves table against the catalog (connecting once if no
// connection has read it yet), lets add fill a flush set, and flushes it.
func (c *Connector) flush(ctx context.Context, op, table string, add func(*planner, *tableInfo, *flushSet) error) error {
	if c.flusher == nil {
		return nil // no cache: nothing is cached
	}
	pl, err := c.ensurePlanner(ctx)
	if err != nil {
		return fmt.Errorf("cachedsql: %s: %w", op, err)
	}
	t, ok := pl.resolveRuleName(table)
	if !ok {
		return fmt.Errorf("%w: %s: table %q", ErrNoRule, op, table)
	}
	set := newFlushSet()
	if err := add(pl, t, set); err != nil {
		return err
	}
	return c.flusher.flushNow(ctx, set)
}

// ensurePlanner returns the pool's planner, opening a connection to read
// the catalog when none has yet.
func (c *Connector) ensurePlanner(ctx context.Context) (*planner, error) {
	if pl := c.planner.Load(); pl != nil {
		return pl, nil
	}
	conn, err := c.Connect(ctx)
	if err != nil {
		return nil, err
	}
	conn.Close()
	return c.planner.Load(), nil
}

// FlushKey is Connector.FlushKey for every pool opened through d.
func (d *Driver) FlushKey(ctx context.Context, table, rule string, values ...any) error {
	return d.eachConnector(func(c *Connector) error { return c.FlushKey(ctx, table, rule, values...) })
}

// FlushRow is Connector.FlushRow for every pool opened through d.
func (d *Driver) FlushRow(ctx context.Context, table string, row map[string]any) error {
	return d.eachConnector(func(c *Connector) error { return c.FlushRow(ctx, table, row) })
}

// FlushTable is Connector.FlushTable for every pool opened through d.
func (d *Driver) FlushTable(ctx context.Context, table string) error {
	return d.eachConnector(func(c *Connector) error { return c.FlushTable(ctx, table) })
}

func (d *Driver) eachConnector(f func(*Connector) error) error {
	d.mu.Lock()
	cs := append([]*Connector(nil), d.connectors...)
	d.mu.Unlock()
	var errs []error
	for _, c := range cs {
		errs = append(errs, f(c))
	}
	return errors.Join(errs...)
}

// forget drops a closed pool from the Flush functions' list.
func (d *Driver) forget(c *Connector) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, x := range d.connectors {
		if x == c {
			d.connectors = append(d.connectors[:i], d.connectors[i+1:]...)
			return
		}
	}
}
