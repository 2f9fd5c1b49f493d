package oracle

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// gen builds random statements from the shapes sqlc, sqlx and hand-written
// code send, good and bad, so the oracle sees many combinations.
type gen struct {
	r *rand.Rand
	n int // last parameter index used
}

func generate(count int, seed uint64) []string {
	g := &gen{r: rand.New(rand.NewPCG(seed, 42))}
	out := make([]string, 0, count)
	for range count {
		g.n = 0
		switch g.r.IntN(10) {
		case 0, 1:
			out = append(out, g.lookup())
		case 2, 3, 4:
			out = append(out, g.selectStmt())
		case 5, 6:
			out = append(out, g.update())
		case 7:
			out = append(out, g.delete())
		case 8:
			out = append(out, g.insert())
		default:
			out = append(out, g.cte())
		}
	}
	return out
}

func (g *gen) pick(s ...string) string { return s[g.r.IntN(len(s))] }

func (g *gen) param() string { g.n++; return fmt.Sprintf("$%d", g.n) }

var (
	tables  = []string{"users", "app.users", `"Users"`, "orders", "t", "public.t"}
	columns = []string{"id", "email", "name", "update", `"Name"`, "org_id", "deleted_at", "status", "delete", "set"}
)

func (g *gen) col() string { return g.pick(columns...) }

func (g *gen) value() string {
	switch g.r.IntN(9) {
	case 0:
		return g.param() + "::bigint"
	case 1:
		return "lower(" + g.param() + ")"
	case 2:
		return "CAST(" + g.param() + " AS int)"
	case 3:
		return fmt.Sprint(g.r.IntN(100))
	case 4:
		return "'x''y'"
	case 5:
		return g.pick("true", "false")
	default:
		return g.param()
	}
}

func (g *gen) conjunct() string {
	c := g.col()
	switch g.r.IntN(16) {
	case 0:
		return g.value() + " = " + c
	case 1:
		return c + " IN (" + g.param() + ", " + g.param() + ")"
	case 2:
		return c + " = ANY(" + g.param() + ")"
	case 3:
		return c + " IS NULL"
	case 4:
		return c + " BETWEEN 1 AND " + g.param()
	case 5:
		return "(" + c + " = " + g.value() + " OR " + g.col() + " = " + g.value() + ")"
	case 6:
		return "NOT " + c + " <> " + g.value()
	case 7:
		return "EXISTS (SELECT 1 FROM bans b WHERE b.id = " + g.param() + ")"
	case 8:
		return c + " > now()"
	case 9:
		return c + " = " + g.col()
	case 10:
		return "lower(" + c + ") = lower(" + g.param() + ")"
	case 11:
		return "(" + c + " = " + g.value() + ")"
	default:
		return c + " = " + g.value()
	}
}

func (g *gen) where() string {
	n := g.r.IntN(4)
	if n == 0 {
		return ""
	}
	parts := make([]string, n)
	for i := range parts {
		parts[i] = g.conjunct()
	}
	w := strings.Join(parts, " AND ")
	switch g.r.IntN(8) {
	case 0:
		w = w + " OR 1=1"
	case 1:
		w = "(" + w + ")"
	}
	return " WHERE " + w
}

func (g *gen) projection() string {
	var items []string
	for range 1 + g.r.IntN(3) {
		items = append(items, g.pick("*", "id", "email AS e", "lower(email) AS le", "count(*)", "now()",
			"create_user(id)", "id::text", g.param()+"::text", "update", "coalesce(name, email)", "price * qty",
			"row_number() OVER ()", "(SELECT 1)", "current_user", "abs(id) n", "to_char(created_at, 'YYYY')",
			"created_at AT TIME ZONE current_setting('TimeZone')", `"check"(id)`, "pg_catalog.lower(email)",
			"created_at::date", g.param()+"::timestamptz", "extract(year from created_at)", "trim(both from name)",
			"upper(substring(name from 1 for 3))", "random()", "nextval('s')", "id + 1", "CASE WHEN id > 0 THEN 1 END"))
	}
	return strings.Join(items, ", ")
}

func (g *gen) from() string {
	t := g.pick(tables...)
	switch g.r.IntN(12) {
	case 0:
		return t + " u JOIN orgs o ON o.id = u.org_id"
	case 1:
		return t + ", orgs"
	case 2:
		return "(SELECT * FROM " + t + ") s"
	case 3, 4:
		return t + " AS x"
	default:
		return t
	}
}

func (g *gen) selectStmt() string {
	var b strings.Builder
	if g.r.IntN(6) == 0 {
		b.WriteString("-- name: GetThing :one\n")
	}
	b.WriteString("SELECT ")
	if g.r.IntN(15) == 0 {
		b.WriteString("DISTINCT ")
	}
	b.WriteString(g.projection())
	b.WriteString(" FROM ")
	b.WriteString(g.from())
	b.WriteString(g.where())
	b.WriteString(g.pick("", "", "", " LIMIT 1", " LIMIT 2", " ORDER BY id", " ORDER BY id DESC LIMIT 1",
		" FOR UPDATE", " LIMIT 1 OFFSET 1", " GROUP BY id", " FETCH FIRST 1 ROW ONLY", " FOR NO KEY UPDATE",
		" UNION SELECT 1", ";", " -- trailing"))
	return b.String()
}

// lookup is biased towards the single-row shapes the cache serves.
func (g *gen) lookup() string {
	var parts []string
	for range 1 + g.r.IntN(3) {
		parts = append(parts, g.pick(g.col()+" = "+g.value(), "lower("+g.col()+") = lower("+g.param()+")",
			g.col()+" IS NULL", g.value()+" = "+g.col(), "("+g.col()+" = "+g.value()+")", g.conjunct()))
	}
	return "SELECT " + g.pick("*", "id, email", "u.*", "update, \"Name\"", "id AS k", "lower(email)", g.projection()) + " FROM " +
		g.pick(tables...) + g.pick("", " u", " AS u") + " WHERE " + strings.Join(parts, " AND ") +
		g.pick("", "", " LIMIT 1", " ORDER BY id LIMIT 1", " FOR UPDATE", " LIMIT 2", ";")
}

func (g *gen) update() string {
	t := g.pick(tables...)
	alias := g.pick("", "", " AS u", " u")
	var sets []string
	for range 1 + g.r.IntN(3) {
		sets = append(sets, g.col()+" = "+g.pick(g.value(), "DEFAULT", "now()", g.col()+" + 1", "touch("+g.param()+")"))
	}
	s := "UPDATE " + t + alias + " SET " + strings.Join(sets, ", ")
	if g.r.IntN(6) == 0 {
		s += " FROM orgs o"
	}
	return s + g.where() + g.pick("", "", " RETURNING id", " RETURNING *", ";")
}

func (g *gen) delete() string {
	s := "DELETE FROM " + g.pick(tables...) + g.pick("", " d", " AS d")
	if g.r.IntN(6) == 0 {
		s += " USING orgs o"
	}
	return s + g.where() + g.pick("", " RETURNING id", ";")
}

func (g *gen) insert() string {
	t := g.pick(tables...)
	rows := 1 + g.r.IntN(3)
	var rs []string
	for range rows {
		rs = append(rs, "("+g.value()+", "+g.pick(g.value(), "DEFAULT", "now()")+")")
	}
	s := "INSERT INTO " + t + " (id, email) VALUES " + strings.Join(rs, ", ")
	if g.r.IntN(5) == 0 {
		s = "INSERT INTO " + t + " (id, email) SELECT id, email FROM src WHERE id = " + g.param()
	}
	s += g.pick("", "", " ON CONFLICT DO NOTHING", " ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email",
		" ON CONFLICT ON CONSTRAINT pk DO NOTHING")
	return s + g.pick("", " RETURNING id", " RETURNING *")
}

func (g *gen) cte() string {
	switch g.r.IntN(4) {
	case 0:
		return "WITH x AS (" + g.update() + " RETURNING id) SELECT * FROM x"
	case 1:
		return "WITH x AS (" + strings.TrimSuffix(g.delete(), ";") + ") INSERT INTO archive SELECT * FROM x"
	case 2:
		return "WITH x AS (SELECT id FROM users WHERE id = " + g.param() + ") " + strings.TrimSuffix(g.update(), ";")
	default:
		return "WITH x AS (" + strings.TrimSuffix(g.selectStmt(), ";") + ") SELECT * FROM x"
	}
}
