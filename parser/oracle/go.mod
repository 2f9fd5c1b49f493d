module github.com/cachedsql/cachedsql/parser/oracle

go 1.26.0

replace github.com/cachedsql/cachedsql => ../..

require (
	github.com/cachedsql/cachedsql v0.0.0
	github.com/pganalyze/pg_query_go/v6 v6.2.5
)

require google.golang.org/protobuf v1.33.0 // indirect
