package cachedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cachedsql/cachedsql"
	fd "github.com/cachedsql/cachedsql/internal/fakedriver"
)

// TestRegisterErrors checks that Register refuses bad input with an error
// matching its sentinel and naming the culprit, never a panic.
func TestRegisterErrors(t *testing.T) {
	// A wrapped driver to register against; sqlmock registers itself.
	const inner = "sqlmock"
	// Register keeps its names for the life of the process: tolerate a
	// previous -count iteration having registered this one.
	dup := "cachedsql-test-dup"
	if _, err := cachedsql.Register(dup, cachedsql.Config{Driver: inner}); err != nil && !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("Register(%q): %v", dup, err)
	}

	for _, tc := range []struct {
		name   string
		cfg    cachedsql.Config
		target error
		says   string
	}{
		{"cachedsql-test-unknown", cachedsql.Config{Driver: "no-such-driver"}, cachedsql.ErrUnknownDriver, `"no-such-driver"`},
		{"", cachedsql.Config{Driver: inner}, cachedsql.ErrConfig, "empty driver name"},
		{dup, cachedsql.Config{Driver: inner}, cachedsql.ErrConfig, dup},
		{cachedsql.DriverName, cachedsql.Config{Driver: inner}, cachedsql.ErrConfig, cachedsql.DriverName},
		{inner, cachedsql.Config{Driver: inner}, cachedsql.ErrConfig, "cannot wrap itself"},
		{"cachedsql-test-self", cachedsql.Config{Driver: "cachedsql-test-self"}, cachedsql.ErrConfig, "cannot wrap itself"},
		{"cachedsql-test-ttl", cachedsql.Config{Driver: inner, TTL: -time.Second}, cachedsql.ErrConfig, "TTL"},
	} {
		t.Run(fmt.Sprintf("%q", tc.name), func(t *testing.T) {
			d, err := cachedsql.Register(tc.name, tc.cfg)
			if !errors.Is(err, tc.target) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Register(%q, Driver %q): got %v, %v; want an error matching %v that says %s",
					tc.name, tc.cfg.Driver, d, err, tc.target, tc.says)
			}
		})
	}
}

// TestNewConnectorErrors checks that NewConnector refuses a nil connector
// and invalid configurations with errors matching ErrConfig.
func TestNewConnectorErrors(t *testing.T) {
	fc, err := fd.New(0)
	if err != nil {
		t.Fatal(err)
	}
	if cn, err := cachedsql.NewConnector(nil, cachedsql.Config{}); !errors.Is(err, cachedsql.ErrConfig) || cn != nil {
		t.Errorf("NewConnector(nil): got %v, %v; want nil, an error matching ErrConfig", cn, err)
	}
	for _, tc := range []struct {
		name string
		cfg  cachedsql.Config
		says string
	}{
		{"negative TTL", cachedsql.Config{TTL: -time.Second}, "TTL"},
		{"TTL over 30 days", cachedsql.Config{TTL: cachedsql.MaxTTL + time.Second}, "TTL"},
		{"negative MissTTL", cachedsql.Config{MissTTL: -time.Second}, "MissTTL"},
		{"MissTTL over 30 days", cachedsql.Config{MissTTL: 31 * 24 * time.Hour}, "MissTTL"},
		{"table without keys", cachedsql.Config{Rules: cachedsql.Rules{
			Tables: map[string]cachedsql.TableRule{"users": {}},
		}}, "users"},
		{"rules TTL over 30 days", cachedsql.Config{Rules: cachedsql.Rules{
			TTL:    cachedsql.MaxTTL + time.Hour,
			Tables: map[string]cachedsql.TableRule{"users": {Keys: [][]string{{"id"}}}},
		}}, "ttl"},
		{"Memcache(nil)", cachedsql.Config{Cache: cachedsql.Memcache(nil)}, "nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cn, err := cachedsql.NewConnector(fc, tc.cfg)
			if !errors.Is(err, cachedsql.ErrConfig) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("NewConnector: got %v, %v; want an error matching ErrConfig that says %s", cn, err, tc.says)
			}
		})
	}
	// The limits themselves are valid.
	if _, err := cachedsql.NewConnector(fc, cachedsql.Config{TTL: cachedsql.MaxTTL, MissTTL: cachedsql.MaxTTL}); err != nil {
		t.Errorf("NewConnector with 30-day TTLs: got %v; want nil", err)
	}
}

// envChild marks the subprocess TestEnvDriverErrors starts: the
// init-registered driver reads the environment once per process.
const envChild = "CACHEDSQL_TEST_ENV_CHILD"

// TestEnvDriverErrors checks, one process per case, that a bad environment
// makes the first Ping of the "cachedsql" driver fail with an error naming
// the variable, rather than a panic or a silent pass-through.
func TestEnvDriverErrors(t *testing.T) {
	if os.Getenv(envChild) != "" {
		db, err := sql.Open(cachedsql.DriverName, "postgres://localhost/x")
		if err == nil {
			err = db.PingContext(context.Background())
		}
		fmt.Printf("ERR: %v\nIS_CONFIG: %t\n", err, errors.Is(err, cachedsql.ErrConfig))
		return
	}
	for _, tc := range []struct {
		name string
		env  []string
		says string
	}{
		{"not memcache", []string{cachedsql.EnvCache + "=redis://localhost:6379"}, cachedsql.EnvCache},
		{"no port", []string{cachedsql.EnvCache + "=memcache://localhost"}, cachedsql.EnvCache},
		{"empty server", []string{cachedsql.EnvCache + "=memcache://localhost:11211,"}, cachedsql.EnvCache},
		{"unresolvable host", []string{cachedsql.EnvCache + "=memcache://no-such-host.invalid:11211"}, cachedsql.EnvCache},
		{"missing rules file", []string{cachedsql.EnvRules + "=" + t.TempDir() + "/missing.yaml"}, cachedsql.EnvRules},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestEnvDriverErrors$", "-test.count=1")
			cmd.Env = append(os.Environ(), envChild+"=1", cachedsql.EnvDriver+"=sqlmock")
			cmd.Env = append(cmd.Env, tc.env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("subprocess: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "IS_CONFIG: true") || !strings.Contains(string(out), tc.says) {
				t.Errorf("first Ping with %q: got\n%s\nwant an error matching ErrConfig that names %s", tc.env, out, tc.says)
			}
		})
	}
}
