// Package oracle checks the parser package against PostgreSQL's own
// parser, github.com/pganalyze/pg_query_go/v6 (libpg_query, cgo). It is a
// separate module so that the driver never links a C parser.
//
// Run it with
//
//	cd parser/oracle && go test ./...
//
// The first build compiles libpg_query's C sources and takes several
// minutes on two cores (see README.md for the measured time); later runs
// are cached.
//
// Wherever parser.Parse says Lookup, the real parse tree must show one
// plain table, an AND of equalities covering the columns reported, and no
// join, subquery, aggregate, window, set operation or locking clause, and
// every function the tree calls must be in Statement.Functions. Wherever it
// says Write, the tables the tree writes must equal the targets reported.
// Wherever it says Lookup, OtherRead, Session or TxControl, the tree must
// hold no INSERT, UPDATE, DELETE or MERGE (plain EXPLAIN and PREPARE
// excepted: they run nothing).
package oracle
