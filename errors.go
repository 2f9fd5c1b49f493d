package cachedsql

import "errors"

// Sentinel errors for conditions callers test with errors.Is. Errors carrying
// them name the statement, table or setting involved.
var (
	// ErrFlushUnavailable is returned by a write on a cached table whose
	// invalidation could not be recorded in the cache before COMMIT. The
	// transaction was rolled back, unless Config.FailOpenWrites is set.
	ErrFlushUnavailable = errors.New("cachedsql: flush unavailable")

	// ErrConfig marks an invalid Config, rules file or environment variable.
	ErrConfig = errors.New("cachedsql: invalid configuration")

	// ErrUnknownDriver is returned when the driver to wrap is not registered.
	ErrUnknownDriver = errors.New("cachedsql: unknown driver")
)
