package parser

// Dialect selects the lexical and grammatical differences between the
// databases cachedsql wraps. The zero value is Postgres.
type Dialect uint8

// Dialects.
const (
	Postgres Dialect = iota
	MySQL
	SQLite
)

// String returns the dialect name: "postgres", "mysql" or "sqlite".
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case MySQL:
		return "mysql"
	case SQLite:
		return "sqlite"
	}
	return "Dialect(?)"
}
