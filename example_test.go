package cachedsql_test

// The examples below are the README's client sections, compiled. Keep the
// two in sync by hand: each example names the README section it mirrors.
// Only ExampleNewConnector_sqlmock runs (it needs no database); the others
// are compiled by `go vet`/`go test` and run nowhere.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"log"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/bradfitz/gomemcache/memcache"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"

	"github.com/cachedsql/cachedsql"
	sqlcdb "github.com/cachedsql/cachedsql/examples/sqlc/db"
)

// Example_databaseSQL mirrors README "database/sql with pgx": the only
// change to code written for pgx is the driver name; the environment
// (CACHEDSQL_RULES, CACHEDSQL_CACHE) configures the cache.
func Example_databaseSQL() {
	db, err := sql.Open("cachedsql", "postgres://app@db/app") // was sql.Open("pgx", ...)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	var name string
	err = db.QueryRow("SELECT name FROM users WHERE id = $1", 42).Scan(&name) // served from the cache on repeat
	if err != nil {
		log.Fatal(err)
	}
	// Writes flush exactly the keys of the rows they touch, at commit.
	if _, err := db.Exec("UPDATE users SET name = $1 WHERE id = $2", "Ann", 42); err != nil {
		log.Fatal(err)
	}
}

// ExampleNewConnector mirrors README "Configuring in code": cachedsql over
// pgx's connector, with rules from a file and memcached.
func ExampleNewConnector() {
	rules, err := cachedsql.LoadRules("rules.yaml")
	if err != nil {
		log.Fatal(err)
	}
	pgxConfig, err := pgx.ParseConfig("postgres://app@db/app")
	if err != nil {
		log.Fatal(err)
	}
	cache, err := cachedsql.NewMemcache(cachedsql.MemcacheConfig{Servers: []string{"127.0.0.1:11211"}})
	if err != nil {
		log.Fatal(err)
	}
	connector, err := cachedsql.NewConnector(stdlib.GetConnector(*pgxConfig), cachedsql.Config{
		Rules: rules,
		Cache: cache,
	})
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
}

// user is scanned by sqlx through its db tags.
type user struct {
	ID    int64  `db:"id"`
	Email string `db:"email"`
	Name  string `db:"name"`
}

// Example_sqlx mirrors README "sqlx": tell sqlx that "cachedsql" uses
// pgx's bind variables, then use it as always.
func Example_sqlx() {
	sqlx.BindDriver("cachedsql", sqlx.DOLLAR) // sqlx does not know the name
	db, err := sqlx.Open("cachedsql", "postgres://app@db/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	var u user
	if err := db.Get(&u, "SELECT * FROM users WHERE id = $1", 42); err != nil { // cached
		log.Fatal(err)
	}
	query, args, err := sqlx.In("SELECT * FROM users WHERE id IN (?)", []int64{1, 2, 3})
	if err != nil {
		log.Fatal(err)
	}
	var users []user
	if err := db.Select(&users, db.Rebind(query), args...); err != nil { // not a key lookup: the database
		log.Fatal(err)
	}
	if _, err := db.NamedExec("UPDATE users SET name = :name WHERE id = :id", u); err != nil {
		log.Fatal(err)
	}
}

// Example_sqlc mirrors README "sqlc": the generated code (database/sql
// mode) takes the *sql.DB opened with "cachedsql"; examples/sqlc has the
// schema, queries, rules and generated package.
func Example_sqlc() {
	db, err := sql.Open("cachedsql", "postgres://app@db/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	queries := sqlcdb.New(db)

	u, err := queries.GetUserByEmail(ctx, "Ann@Example.com") // lower(email) = lower($1): cached
	if err != nil {
		log.Fatal(err)
	}
	// A re-key: both the old and the new handle are flushed at commit.
	if err := queries.RenameUser(ctx, sqlcdb.RenameUserParams{ID: u.ID, Handle: "ann2"}); err != nil {
		log.Fatal(err)
	}
}

// mockConnector opens sqlmock connections for NewConnector: sqlmock's
// driver has no OpenConnector, and its Open returns the mock registered
// under the DSN.
type mockConnector struct {
	dsn    string
	driver driver.Driver
}

func (c mockConnector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }
func (c mockConnector) Driver() driver.Driver                        { return c.driver }

// ExampleNewConnector_sqlmock mirrors README "go-sqlmock": tests of code
// that uses cachedsql run it over go-sqlmock with the in-process cache, no
// server needed. A repeated key lookup reaches the mock once. With sqlmock
// the catalog is not read (it is not known to be PostgreSQL), so a write
// runs exactly as sent and flushes its whole table.
func ExampleNewConnector_sqlmock() {
	mockDB, mock, err := sqlmock.NewWithDSN("example-sqlmock", sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		log.Fatal(err)
	}
	defer mockDB.Close()
	rules, err := cachedsql.ParseRules([]byte(`
tables:
  users:
    keys: [[id]]
`))
	if err != nil {
		log.Fatal(err)
	}
	connector, err := cachedsql.NewConnector(mockConnector{dsn: "example-sqlmock", driver: mockDB.Driver()}, cachedsql.Config{
		Rules: rules,
		Cache: cachedsql.NewMemoryCache(0),
	})
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()

	const byID = "SELECT name FROM users WHERE id = $1"
	mock.ExpectQuery(byID).WithArgs(1).WillReturnRows(sqlmock.NewRows([]string{"name"}).AddRow("ann"))
	mock.ExpectExec("UPDATE users SET name = $1 WHERE id = $2").WithArgs("bob", 1).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectQuery(byID).WithArgs(1).WillReturnRows(sqlmock.NewRows([]string{"name"}).AddRow("bob"))

	var name string
	for range 2 { // the second lookup is served from the cache
		if err := db.QueryRow(byID, 1).Scan(&name); err != nil {
			log.Fatal(err)
		}
		fmt.Println(name)
	}
	if _, err := db.Exec("UPDATE users SET name = $1 WHERE id = $2", "bob", 1); err != nil {
		log.Fatal(err)
	}
	if err := db.QueryRow(byID, 1).Scan(&name); err != nil { // flushed: the mock again
		log.Fatal(err)
	}
	fmt.Println(name)
	if err := mock.ExpectationsWereMet(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("expectations met")
	// Output:
	// ann
	// ann
	// bob
	// expectations met
}

// ExampleInnerConn mirrors README "Reaching the pgx connection": pgx's own
// API (here CopyFrom) through sql.Conn.Raw. Writes made on the inner
// connection bypass cachedsql, so flush what they changed yourself.
func ExampleInnerConn() {
	ctx := context.Background()
	pgxConfig, err := pgx.ParseConfig("postgres://app@db/app")
	if err != nil {
		log.Fatal(err)
	}
	rules, err := cachedsql.LoadRules("rules.yaml")
	if err != nil {
		log.Fatal(err)
	}
	connector, err := cachedsql.NewConnector(stdlib.GetConnector(*pgxConfig), cachedsql.Config{
		Rules: rules,
		Cache: cachedsql.Memcache(memcache.New("127.0.0.1:11211")),
	})
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()

	conn, err := db.Conn(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		pgxConn := cachedsql.InnerConn(dc).(*stdlib.Conn).Conn()
		_, err := pgxConn.CopyFrom(ctx, pgx.Identifier{"users"}, []string{"email", "name"},
			pgx.CopyFromRows([][]any{{"ann@example.com", "Ann"}, {"bob@example.com", "Bob"}}))
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	// Nothing was flushed for the copied rows (cached misses of their
	// keys, say): flush the table.
	if err := connector.FlushTable(ctx, "users"); err != nil {
		log.Fatal(err)
	}
}
