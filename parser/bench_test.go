package parser

import "testing"

const (
	benchLookup = "-- name: GetAuthor :one\nSELECT id, name, bio FROM authors\nWHERE id = $1 LIMIT 1"
	benchUpdate = "-- name: UpdateAuthor :exec\nUPDATE authors SET name = $2, bio = $3 WHERE id = $1"
)

// BenchmarkParseLookup classifies a typical sqlc :one lookup.
func BenchmarkParseLookup(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if st := Parse(benchLookup, Postgres); st.Kind != Lookup {
			b.Fatal(st.Kind)
		}
	}
}

// BenchmarkParseUpdate classifies a typical UPDATE by primary key.
func BenchmarkParseUpdate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if st := Parse(benchUpdate, Postgres); st.Kind != Write {
			b.Fatal(st.Kind)
		}
	}
}

// BenchmarkLex measures the lexer alone on the lookup.
func BenchmarkLex(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = Lex(benchLookup, Postgres)
	}
}
