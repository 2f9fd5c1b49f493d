package cachedsql

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// loadSQLite reads the catalog with PRAGMA table-valued functions through
// the wrapped connection, and returns the database identity: the main
// database file (a random one for in-memory databases, which no other
// process can share).
func loadSQLite(ctx context.Context, q driver.QueryerContext, c *catalog, cfg *Config) (string, error) {
	var file string
	err := sqliteRows(ctx, q, `SELECT file FROM pragma_database_list WHERE name = 'main'`, nil, func(v []driver.Value) error {
		file = sqliteString(v[0])
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("cachedsql: reading catalog: %w", err)
	}
	identity := "sqlite:" + file
	if file == "" {
		identity = randomIdentity()
	}
	for _, rt := range ruleTables(cfg) {
		t, err := loadSQLiteTable(ctx, q, &rt, cfg)
		if err != nil {
			return "", err
		}
		c.add(t)
		// Every main table is reachable by its bare name (a temp table of
		// the same name would shadow it; see the package documentation).
		c.bare[t.name] = t
	}
	return identity, nil
}

func loadSQLiteTable(ctx context.Context, q driver.QueryerContext, rt *ruleTable, cfg *Config) (*tableInfo, error) {
	if s := rt.id.schema(); s != "" && !strings.EqualFold(s, "main") {
		return nil, &RulesError{Where: rt.where, Msg: fmt.Sprintf("schema %q: only tables of the main database can be cached with SQLite", s)}
	}
	var name, typ, ddl string
	found := false
	err := sqliteRows(ctx, q, `SELECT name, type, coalesce(sql, '') FROM main.sqlite_schema WHERE name = ? COLLATE NOCASE AND type IN ('table', 'view')`,
		[]driver.NamedValue{{Ordinal: 1, Value: rt.id.table()}}, func(v []driver.Value) error {
			name, typ, ddl = sqliteString(v[0]), sqliteString(v[1]), sqliteString(v[2])
			found = true
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("cachedsql: reading catalog: %s: %w", rt.where, err)
	}
	if !found {
		return nil, &RulesError{Where: rt.where, Msg: "does not exist in the main SQLite database"}
	}
	if typ != "table" {
		return nil, &RulesError{Where: rt.where, Msg: fmt.Sprintf("%q is a %s, not a table: only tables can be cached", name, typ)}
	}
	// SQLite names ignore ASCII case: the catalog stores them lower-cased,
	// and catalog.table folds what statements use.
	lname := strings.ToLower(name)

	columns := make(map[string]columnInfo)
	colByCID := map[int64]string{}
	var pk []string
	arg := []driver.NamedValue{{Ordinal: 1, Value: name}}
	err = sqliteRows(ctx, q, `SELECT cid, name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid`, arg, func(v []driver.Value) error {
		cname, ctype := strings.ToLower(sqliteString(v[1])), sqliteString(v[2])
		ci := columnInfo{typ: ctype, nullable: sqliteInt(v[3]) == 0}
		ci.kind, ci.bits = sqliteKind(ctype)
		ci.stringsOnly = true
		columns[cname] = ci
		colByCID[sqliteInt(v[0])] = cname
		if sqliteInt(v[4]) > 0 {
			pk = append(pk, cname)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cachedsql: reading catalog: %s: %w", rt.where, err)
	}
	// Column names too ignore case in SQLite.
	lrt := *rt
	lrt.keys = make([][]string, len(rt.keys))
	lrt.lower = make(map[string]bool, len(rt.lower))
	lrt.cols = make(map[string]string, len(rt.cols))
	for i, key := range rt.keys {
		for _, col := range key {
			lc := strings.ToLower(col)
			lrt.keys[i] = append(lrt.keys[i], lc)
			lrt.cols[lc] = rt.cols[col]
			if rt.lower[col] {
				lrt.lower[lc] = true
			}
		}
	}
	t, err := lrt.newTable("main", lname, columns)
	if err != nil {
		return nil, err
	}

	var indexes []uniqueIndex
	if len(pk) > 0 {
		// An INTEGER PRIMARY KEY is the rowid and has no index of its own.
		ix := uniqueIndex{name: "primary key", cols: map[string]indexCol{}}
		for _, col := range pk {
			ix.cols[col] = indexCol{}
		}
		indexes = append(indexes, ix)
	}
	var uniques []string
	err = sqliteRows(ctx, q, `SELECT name FROM pragma_index_list(?) WHERE "unique" AND NOT partial`, arg, func(v []driver.Value) error {
		uniques = append(uniques, sqliteString(v[0]))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cachedsql: reading catalog: %s: %w", rt.where, err)
	}
	for _, iname := range uniques {
		ix := uniqueIndex{name: iname, cols: map[string]indexCol{}}
		err = sqliteRows(ctx, q, `SELECT cid, coll FROM pragma_index_xinfo(?) WHERE key ORDER BY seqno`,
			[]driver.NamedValue{{Ordinal: 1, Value: iname}}, func(v []driver.Value) error {
				col, ok := colByCID[sqliteInt(v[0])]
				if !ok || ix.cols == nil {
					ix.cols = nil // an expression (cid -2) or the rowid (-1)
					return nil
				}
				ix.cols[col] = indexCol{collation: sqliteString(v[1])}
				return nil
			})
		if err != nil {
			return nil, fmt.Errorf("cachedsql: reading catalog: %s: %w", rt.where, err)
		}
		if ix.cols != nil {
			indexes = append(indexes, ix)
		}
	}
	applySQLiteCollations(t, ddl, indexes)
	warnUnbacked(cfg, t, indexes)
	return t, nil
}

// applySQLiteCollations decides how text key columns compare. Without a
// COLLATE clause in the table's DDL, every column is BINARY: exact. With
// one, a column's collation is known only from a unique index on it (an
// index inherits the column's collation unless it names another, so this
// is a heuristic that errs on the safe side): BINARY stays exact, NOCASE
// folds ASCII (as our lower does), anything else (RTRIM, custom) or
// unknown makes the column unusable as a key value.
func applySQLiteCollations(t *tableInfo, ddl string, indexes []uniqueIndex) {
	if !strings.Contains(strings.ToUpper(ddl), "COLLATE") {
		return
	}
	for ki := range t.keys {
		for ci := range t.keys[ki].cols {
			kc := &t.keys[ki].cols[ci]
			if kc.kind != kindText && kc.kind != kindUnknown {
				continue
			}
			coll := ""
			for _, ix := range indexes {
				if ic, ok := ix.cols[kc.name]; ok && ic.collation != "" && ix.backs(t.keys[ki]) {
					coll = strings.ToUpper(ic.collation)
					break
				}
			}
			switch coll {
			case "BINARY":
			case "NOCASE":
				kc.lower, kc.nativeLower = true, true
			default:
				kc.kind = kindUnsupported
			}
		}
	}
}

// sqliteKind maps a declared type to its affinity's comparison family
// (https://sqlite.org/datatype3.html#determination_of_column_affinity).
// NUMERIC and REAL affinities convert values in ways we do not reproduce
// (1.0 = 1); BLOB affinity (also no type) compares by storage class, as
// kindUnknown's type-tagged values do.
func sqliteKind(declared string) (colKind, int) {
	t := strings.ToUpper(declared)
	switch {
	case strings.Contains(t, "INT"):
		return kindInt, 64
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return kindText, 0
	case t == "", strings.Contains(t, "BLOB"):
		return kindUnknown, 0
	}
	return kindUnsupported, 0
}

// sqliteRows runs a catalog query and calls f for each row.
func sqliteRows(ctx context.Context, q driver.QueryerContext, query string, args []driver.NamedValue, f func([]driver.Value) error) error {
	rows, err := q.QueryContext(ctx, query, args)
	if err != nil {
		return err
	}
	defer rows.Close()
	v := make([]driver.Value, len(rows.Columns()))
	for {
		err := rows.Next(v)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := f(v); err != nil {
			return err
		}
	}
}

func sqliteString(v driver.Value) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func sqliteInt(v driver.Value) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case bool:
		if x {
			return 1
		}
		return 0
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	case []byte:
		n, _ := strconv.ParseInt(string(x), 10, 64)
		return n
	}
	return 0
}
