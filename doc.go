// Package cachedsql is a database/sql driver that serves single-row key
// lookups from memcached and flushes exactly the keys each write touches,
// without changing the code that issues the queries.
//
// # Using it
//
// Importing the package registers the driver "cachedsql", which wraps pgx
// (github.com/jackc/pgx/v5/stdlib) and reads its configuration from the
// environment at the first sql.Open:
//
//	CACHEDSQL_RULES      path to a rules file (see LoadRules)
//	CACHEDSQL_CACHE      memcache://host:port[,host:port...], or memory for
//	                     an in-process cache (single process only); unset:
//	                     nothing is cached, with one warning
//	CACHEDSQL_DRIVER     the registered driver to wrap (default pgx)
//	CACHEDSQL_NAMESPACE  added to the default key namespace
//
// A bad value makes that Open fail with an error naming the variable. For
// configuration in code, use Register (a named driver for sql.Open) or
// NewConnector (for sql.OpenDB, with any driver.Connector: pgx's
// stdlib.GetConnector, go-sqlmock, ...).
//
// # What passes through untouched
//
// Every statement that is not a cached key lookup goes to the wrapped
// driver as written, and its rows come back as the wrapped driver's own
// rows, so column types and every optional interface survive. The wrapper
// implements ExecerContext, QueryerContext, ConnPrepareContext, ConnBeginTx,
// Pinger and NamedValueChecker with database/sql's own fallbacks when the
// wrapped driver lacks them, and exposes SessionResetter, Validator and a
// statement's ColumnConverter only when the wrapped driver has them, since
// their presence alone changes database/sql's behaviour.
//
// # Reaching the wrapped connection
//
// sql.Conn.Raw hands its function the cachedsql connection; InnerConn
// returns the wrapped driver's connection from it. With pgx:
//
//	err := sqlConn.Raw(func(dc any) error {
//		pgxConn := cachedsql.InnerConn(dc).(*stdlib.Conn).Conn()
//		...
//	})
//
// Writes made through the inner connection bypass cachedsql: the cache is
// not flushed for them. Use the Flush APIs, or let the TTL bound them.
package cachedsql
