package parser_test

import (
	"fmt"

	"github.com/cachedsql/cachedsql/parser"
)

func ExampleParse() {
	// A sqlc :one lookup: cacheable if (email) is a declared key whose rule
	// normalises with lower(); deleted_at IS NULL is a row-local extra.
	st := parser.Parse(`-- name: GetUser :one
SELECT id, email FROM users WHERE lower(email) = lower($1) AND deleted_at IS NULL LIMIT 1`, parser.Postgres)
	lk := st.Lookup
	fmt.Println(st.Kind, st.Name, st.Cmd, "table:", lk.Table)
	for _, e := range lk.Pinned {
		fmt.Printf("pinned: %v(%s) = %v($%d)\n", e.ColumnWrap, e.Column, e.Value.Wrap, e.Value.Param)
	}
	fmt.Println("extra:", lk.Extra[0].Text)

	// An UPDATE by primary key: the driver appends RETURNING to learn the
	// keys it touched.
	sql := "UPDATE users SET email = $2 WHERE id = $1"
	st = parser.Parse(sql, parser.Postgres)
	tg := st.Targets[0]
	fmt.Println(st.Kind, tg.Op, tg.Table, "where:", tg.Where.Text, "pure:", tg.PureKeyWhere)
	fmt.Printf("set: %s = $%d\n", tg.Set[0].Column, tg.Set[0].Value.Param)
	fmt.Println(sql[:tg.ReturningAt] + " RETURNING id")

	// Not a lookup, and the reason says why.
	st = parser.Parse("SELECT * FROM users WHERE id = $1 OR 1=1", parser.Postgres)
	fmt.Printf("%v: %s\n", st.Kind, st.Reason)
	// Output:
	// Lookup GetUser :one table: users
	// pinned: [lower](email) = [lower]($1)
	// extra: deleted_at IS NULL
	// Write Update users where: id = $1 pure: true
	// set: email = $2
	// UPDATE users SET email = $2 WHERE id = $1 RETURNING id
	// OtherRead: WHERE is not an equality conjunction
}
