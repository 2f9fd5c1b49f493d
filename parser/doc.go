// Package parser answers, for every SQL statement cachedsql sees, one
// question: is this a single-row key lookup that may be served from the
// cache, and if it writes, which tables, rows and keys can it touch?
//
// It is a pure package: no database, no cache, no package state, only the
// standard library. [Parse] never fails; a statement it does not
// understand is [Unknown], with a reason and a byte position, and the
// driver treats it as a write of unknown tables (design brief G5: when in
// doubt, flush more).
//
// The package has two layers. [Lex] is a synchronous, zero-copy lexer
// complete for PostgreSQL's lexical classes plus the MySQL and SQLite
// differences ([Dialect]). On top of it a recognizer, not a full SQL
// parser, matches the shapes cachedsql caches or flushes and answers "not
// mine" for everything else:
//
//   - [Lookup]: SELECT from one table whose WHERE is an AND of equalities
//     pinning columns to parameters or literals, with only IMMUTABLE
//     functions, operators and casts (see allowlist.go), no joins,
//     subqueries, aggregates, window functions, locking clauses, OFFSET,
//     DISTINCT ON, GROUP BY, set operations, and LIMIT 1 if any LIMIT.
//     Whether the pinned columns cover a declared key is for the driver to
//     decide: it knows the rules.
//   - [Write]: INSERT, UPDATE, DELETE, MERGE, upserts, TRUNCATE, COPY FROM,
//     CALL, DO, DDL, SELECT INTO, writable WITH queries and EXPLAIN ANALYZE
//     of any of them, with one [Target] per table written.
//   - [TxControl], [Session], [OtherRead], [Multi] and [Unknown].
//
// # Limits
//
// The recognizer reads syntax, not the catalog. Known consequences, all of
// which the driver must cover with the catalog or accept:
//
//   - + and - are allowed in a Lookup although timestamptz + interval is
//     STABLE; || is refused in PostgreSQL for the same reason.
//   - A cast of a column to a text type is refused (timestamptz::text is
//     STABLE), a cast of a parameter or literal to it is allowed.
//   - A function whose name is on the allowlist but which a user has
//     shadowed in a schema earlier on search_path is taken for the
//     built-in; sessions that change search_path bypass the cache anyway.
//   - A string literal or parameter compared with a date/time column is
//     read with the session's TimeZone and DateStyle; the parser cannot see
//     column types. The driver must pin those settings or not cache such
//     columns' lookups.
//   - "FROM t x(a, b)" (an alias with column names but without AS) is taken
//     for a call of x(): a wrong guess costs a cache miss only.
//   - MySQL is read with the default sql_mode: "..." is a string (not
//     ANSI_QUOTES), backslashes escape (not NO_BACKSLASH_ESCAPES), || is OR
//     (not PIPES_AS_CONCAT). PostgreSQL is read with
//     standard_conforming_strings on, the default since 9.1.
//   - Schema-qualified built-ins (pg_catalog.lower) are not on the
//     allowlist, and are reported as calls that may write.
//   - A plain EXPLAIN of a write is Session: it plans the write, runs
//     nothing. PREPARE is Session too; the EXECUTE that runs it is Unknown.
//   - Functions lists the calls found in the clauses the recognizer reads;
//     for Unknown statements it may be incomplete.
//
// # Testing
//
//	go test ./parser/...                      # golden cases, examples, malformed input
//	go test ./parser -run TestGolden -update  # rewrite testdata/golden; review the diff by hand
//	go test ./parser -run XXX -fuzz FuzzLex -fuzztime 5m -parallel 1
//	go test ./parser -run XXX -fuzz FuzzParse -fuzztime 5m -parallel 1
//	go test ./parser -run XXX -bench . -benchmem
//	cd parser/oracle && go test ./...         # differential test against PostgreSQL's parser (cgo)
package parser
