package cachedsql_test

import (
	"testing"

	"github.com/cachedsql/cachedsql"
	"github.com/cachedsql/cachedsql/internal/cachetest"
)

func TestMemoryCache(t *testing.T) {
	t.Parallel()
	cachetest.Run(t, func(t *testing.T) cachedsql.Cache {
		return cachedsql.NewMemoryCache(0)
	})
}
