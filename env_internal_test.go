package cachedsql

import (
	"errors"
	"strings"
	"testing"
)

// TestConfigFromEnvErrors checks configFromEnv directly: each bad variable
// gives an error matching ErrConfig that names the variable and its value.
func TestConfigFromEnvErrors(t *testing.T) {
	for _, tc := range []struct{ name, key, value string }{
		{"scheme", EnvCache, "redis://localhost:6379"},
		{"no port", EnvCache, "memcache://localhost"},
		{"no host", EnvCache, "memcache://:11211"},
		{"empty list", EnvCache, "memcache://"},
		{"unresolvable", EnvCache, "memcache://no-such-host.invalid:11211"},
		{"missing rules", EnvRules, "/nonexistent/cachedsql-rules.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{EnvCache, EnvRules, EnvDriver, EnvNamespace} {
				t.Setenv(k, "")
			}
			t.Setenv(tc.key, tc.value)
			_, err := configFromEnv()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.value) {
				t.Errorf("configFromEnv with %s=%q: got %v; want an error matching ErrConfig naming both", tc.key, tc.value, err)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		t.Setenv(EnvRules, "")
		t.Setenv(EnvCache, "memory")
		if _, err := configFromEnv(); err != nil {
			t.Errorf("configFromEnv with %s=memory: got %v; want nil", EnvCache, err)
		}
	})
}
