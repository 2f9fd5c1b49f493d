package parser_test

import (
	"fmt"

	"github.com/cachedsql/cachedsql/parser"
)

func ExampleParse() {
	st := parser.Parse("-- name: GetUser :one\nSELECT id, email FROM users WHERE lower(email) = lower($1) AND deleted_at IS NULL LIMIT 1", parser.Postgres)
	fmt.Println(st.Kind, st.Name, st.Cmd)
	lk := st.Lookup
	for _, e := range lk.Pinned {
		fmt.Printf("table %s: %v(%s) = %v($%d)\n", lk.Table, e.ColumnWrap, e.Column, e.Value.Wrap, e.Value.Param)
	}
	fmt.Println("extra:", lk.Extra[0].Text)

	sql := "UPDATE users SET email = $2 WHERE id = $1"
	st = parser.Parse(sql, parser.Postgres)
	tg := st.Targets[0]
	fmt.Println(st.Kind, tg.Op, tg.Table, "pinned", tg.Pinned[0].Column, "= $", tg.Pinned[0].Value.Param, "pure", tg.PureKeyWhere)
	fmt.Println("set", tg.Set[0].Column, "= $", tg.Set[0].Value.Param)
	fmt.Println(sql[:tg.ReturningAt] + " RETURNING id")

	st = parser.Parse("SELECT * FROM users WHERE id = $1 OR 1=1", parser.Postgres)
	fmt.Printf("%v: %s\n", st.Kind, st.Reason)
	// Output:
	// Lookup GetUser :one
	// table users: [lower](email) = [lower]($1)
	// extra: deleted_at IS NULL
	// Write Update users pinned id = $ 1 pure true
	// set email = $ 2
	// UPDATE users SET email = $2 WHERE id = $1 RETURNING id
	// OtherRead: WHERE is not an equality conjunction
}
