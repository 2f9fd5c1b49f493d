package cachedsql_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/testenv"
)

// metricsValues flattens collected data: "name" or "name{k=v}" -> value
// (sums and gauges), "name{...}.count" -> histogram count.
func metricsValues(t *testing.T, rm metricdata.ResourceMetrics) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	key := func(name string, set attribute.Set) string {
		if set.Len() == 0 {
			return name
		}
		var parts []string
		for _, kv := range set.ToSlice() {
			parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
		}
		return name + "{" + strings.Join(parts, ",") + "}"
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic {
					t.Errorf("%s is not monotonic", m.Name)
				}
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)+".count"] = float64(p.Count)
					if p.Sum < 0 {
						t.Errorf("%s: negative sum", m.Name)
					}
				}
			default:
				t.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	ctx := context.Background()
	plain, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	schema := "metrics_" + strings.ToLower(rand.Text()[:10])
	for _, s := range []string{
		"CREATE SCHEMA " + schema,
		"CREATE TABLE " + schema + ".users (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text)",
		"INSERT INTO " + schema + ".users VALUES (1, 'ann@example.com', 'Ann'), (2, 'bob@example.com', 'Bob')",
	} {
		if _, err := plain.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	defer plain.Exec("DROP SCHEMA " + schema + " CASCADE")

	rules, err := cachedsql.ParseRules([]byte("tables:\n  " + schema + ".users:\n    keys: [[id], [email]]\n"))
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(ctx)
	var logs bytes.Buffer
	pcfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	connector, err := cachedsql.NewConnector(stdlib.GetConnector(*pcfg), cachedsql.Config{
		Rules:         rules,
		Cache:         cachedsql.NewMemoryCache(0),
		MeterProvider: provider,
		Logger:        slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)

	byID := "SELECT name FROM " + schema + ".users WHERE id = $1"
	lookup := func(id int) {
		t.Helper()
		var name string
		err := db.QueryRowContext(ctx, byID, id).Scan(&name)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatal(err)
		}
	}
	lookup(1)  // miss, fill
	lookup(1)  // hit
	lookup(1)  // hit
	lookup(99) // miss, fill of "no such row"
	lookup(99) // negative hit
	if _, err := db.ExecContext(ctx, "UPDATE "+schema+".users SET name = 'Annie' WHERE id = $1", 1); err != nil {
		t.Fatal(err) // flushes the keys (id) and (email) of row 1
	}
	lookup(1) // miss, fill
	if _, err := db.ExecContext(ctx, "UPDATE "+schema+".users u SET name = u.name FROM "+schema+".users o WHERE o.id = u.id AND u.id = $1", 2); err != nil {
		t.Fatal(err) // UPDATE ... FROM: a table bump
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	if err := tx.QueryRowContext(ctx, byID, 2).Scan(&name); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	if _, err := db.QueryContext(ctx, "SELECT count(*) FROM "+schema+".users"); err != nil {
		t.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := metricsValues(t, rm)
	stats := connector.Stats()
	for name, want := range map[string]float64{
		"cachedsql.lookup.hits":                                 2,
		"cachedsql.lookup.negative_hits":                        1,
		"cachedsql.lookup.misses":                               3,
		"cachedsql.fills":                                       3,
		"cachedsql.fill.races_lost":                             0,
		"cachedsql.flush.keys":                                  2,
		"cachedsql.flush.table_bumps":                           1,
		"cachedsql.bypasses{reason=transaction}":                1,
		"cachedsql.bypasses{reason=nocache}":                    0,
		"cachedsql.cache.errors":                                0,
		"cachedsql.cache.breaker.state":                         0,
		"cachedsql.rule_violations":                             0,
		"cachedsql.lease.waits":                                 float64(stats.LeaseWaits),
		"cachedsql.statements{op=exec}":                         float64(stats.Execs),
		"cachedsql.statements{op=query}":                        float64(stats.Queries),
		"cachedsql.pass_throughs":                               float64(stats.PassThroughs),
		"cachedsql.flush.duration{op=protect,outcome=ok}.count": 2,
		"cachedsql.flush.duration{op=release,outcome=ok}.count": 2,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (reported: %v), want %v", name, v, ok, want)
		}
	}
	if stats.Hits != 2 || stats.Misses != 3 {
		t.Errorf("Stats disagree with the test's arithmetic: %+v", stats)
	}
	if t.Failed() {
		t.Logf("collected: %v", got)
	}

	// One debug line per plan, saying why: the lookup is cached (once,
	// although it ran six times), the aggregate is not.
	text := logs.String()
	if n := strings.Count(text, "cached=true"); n != 1 {
		t.Errorf("%d debug lines for the cached lookup, want 1:\n%s", n, text)
	}
	if !strings.Contains(text, "cached=false") || !strings.Contains(text, "aggregate") {
		t.Errorf("no debug line saying why the aggregate is not cached:\n%s", text)
	}

	// Closing the pool unregisters the callback: nothing more is reported.
	db.Close()
	rm = metricdata.ResourceMetrics{}
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	if v, ok := metricsValues(t, rm)["cachedsql.lookup.hits"]; ok {
		t.Errorf("after Close, hits still reported: %v", v)
	}
}

// Without a MeterProvider nothing is registered and nothing breaks.
func TestMetricsNilProvider(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	pcfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	rules, _ := cachedsql.ParseRules([]byte("tables:\n  pg_catalog.pg_class:\n    keys: [[oid]]\n"))
	c, err := cachedsql.NewConnector(stdlib.GetConnector(*pcfg), cachedsql.Config{Rules: rules, Cache: cachedsql.NewMemoryCache(0)})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	if _, err := db.Exec("SELECT 1"); err != nil {
		t.Fatal(err)
	}
}
