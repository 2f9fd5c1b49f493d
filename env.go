package cachedsql

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// Environment variables that configure the driver registered as "cachedsql".
const (
	EnvRules     = "CACHEDSQL_RULES"     // path to a rules file
	EnvCache     = "CACHEDSQL_CACHE"     // memcache://host:port[,host:port...] or memory
	EnvDriver    = "CACHEDSQL_DRIVER"    // wrapped driver name (default pgx)
	EnvNamespace = "CACHEDSQL_NAMESPACE" // added to the default namespace
)

// envMemcacheIdleConns sizes the memcached pool of the environment-configured
// driver.
const envMemcacheIdleConns = 64

// configFromEnv builds the Config of the init-registered driver. Errors name
// the variable at fault.
func configFromEnv() (Config, error) {
	var cfg Config
	cfg.Driver = os.Getenv(EnvDriver)
	cfg.Namespace = os.Getenv(EnvNamespace)
	if path := os.Getenv(EnvRules); path != "" {
		rules, err := LoadRules(path)
		if err != nil {
			return Config{}, fmt.Errorf("%w: %s=%q: %w", ErrConfig, EnvRules, path, err)
		}
		cfg.Rules = rules
	}
	if spec := os.Getenv(EnvCache); spec != "" {
		cache, err := parseCacheSpec(spec)
		if err != nil {
			return Config{}, fmt.Errorf("%w: %s=%q: %w", ErrConfig, EnvCache, spec, err)
		}
		cfg.Cache = cache
	}
	return cfg.validated()
}

// parseCacheSpec reads "memory" or "memcache://host:port[,host:port...]".
func parseCacheSpec(spec string) (Cache, error) {
	if spec == "memory" {
		return NewMemoryCache(0), nil
	}
	list, ok := strings.CutPrefix(spec, "memcache://")
	if !ok {
		return nil, fmt.Errorf(`want "memory" or "memcache://host:port[,host:port...]"`)
	}
	var addrs []string
	for addr := range strings.SplitSeq(list, ",") {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("server %q is not host:port", addr)
		}
		addrs = append(addrs, addr)
	}
	// NewMemcache resolves the addresses now, so a typo fails the first
	// Open rather than every read; an unreachable server is not an error
	// (reads fail open). Its pools are sized for a pool's concurrency.
	return NewMemcache(MemcacheConfig{Servers: addrs, MaxIdleConns: envMemcacheIdleConns})
}
