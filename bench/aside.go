package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/cachedsql/cachedsql"
)

// aside is what users write today: the object-caching pattern with
// gomemcache and encoding/json. On a miss it reads the database and sets
// the object (delete-then-set, with the stale-set race the design brief
// warns about: it is here as a speed reference, not a correct cache).
type aside struct {
	e *Env
}

func (e *Env) aside() *aside { return &aside{e: e} }

const asideTTL = int32(entryTTL / time.Second) // as cachedsql's entries

func (a *aside) get(ctx context.Context, key string, query string, arg any, u *User, want int) error {
	it, err := a.e.mc.Get(key)
	if err == nil {
		if err := json.Unmarshal(it.Value, u); err == nil && u.ID == int64(want) {
			return nil
		}
	} else if !errors.Is(err, memcache.ErrCacheMiss) {
		return err
	}
	if err := scanUser(a.e.plain.QueryRowContext(ctx, query, arg), u, want); err != nil {
		return err
	}
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return a.e.mc.Set(&memcache.Item{Key: key, Value: b, Expiration: asideTTL})
}

func (a *aside) getByID(ctx context.Context, id int, u *User) error {
	return a.get(ctx, a.e.floorKeys[id], a.e.byID, id, u, id)
}

func (a *aside) getByEmail(ctx context.Context, id int, u *User) error {
	return a.get(ctx, a.e.floorEmailKeys[id], a.e.byEmail, a.e.emails[id], u, id)
}

// queryRower is *sql.DB or *sql.Conn.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// cachedDefaults opens (once) a cachedsql pool on the same connector
// settings, with gomemcache's and database/sql's default idle pools.
func (e *Env) cachedDefaults() *sql.DB {
	if e.defaultsDB != nil {
		return e.defaultsDB
	}
	e.mcDefaults = memcacheClient(e.servers, 0)
	c, err := cachedsql.NewConnector(e.cachedConnBase, cachedsql.Config{
		Rules: e.rules, Namespace: e.namespace, Cache: cachedsql.Memcache(e.mcDefaults),
		CacheTimeout: e.cacheTimeout, LeaseWait: e.leaseWait,
	})
	if err != nil {
		panic(fmt.Sprintf("bench: %v", err)) // the same config opened already
	}
	e.defaultsDB = e.track(sql.OpenDB(c))
	return e.defaultsDB
}
