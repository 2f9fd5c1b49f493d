package cachedsql

import "context"

type cacheModeKey struct{}

type cacheMode uint8

const (
	modeNoCache cacheMode = iota + 1 // go to the database, fill nothing
	modeFresh                        // go to the database, then refill
)

// NoCache returns a context whose lookups go to the database and leave the
// cache as it is.
func NoCache(ctx context.Context) context.Context {
	return context.WithValue(ctx, cacheModeKey{}, modeNoCache)
}

// Fresh returns a context whose lookups go to the database and store what
// they read, replacing any cached result.
func Fresh(ctx context.Context) context.Context {
	return context.WithValue(ctx, cacheModeKey{}, modeFresh)
}

func cacheModeOf(ctx context.Context) cacheMode {
	m, _ := ctx.Value(cacheModeKey{}).(cacheMode)
	return m
}
