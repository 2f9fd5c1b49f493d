package cachedsql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// ErrNilClient is what every operation of Memcache(nil) returns. The
// constructor has no error result, so a nil client becomes a Cache that
// fails loudly instead of a panic on first use; configuration validation
// reports it up front (see checkCache).
var ErrNilClient = errors.New("cachedsql: Memcache: nil *memcache.Client")

var errNilItem = errors.New("nil *Item")

// Memcache returns a Cache backed by memcached through c. The caller owns c
// and keeps control of its servers, timeouts and pool: set c.MaxIdleConns at
// least to the expected number of concurrent operations, because above it
// every operation dials a new connection.
//
// gomemcache has no context. When ctx can be cancelled, each operation runs
// in its own goroutine and returns ctx's error as soon as ctx is done; the
// abandoned call finishes in the background, bounded by c.Timeout, and a
// write it carried may still take effect. Contexts that can never be done
// cost no goroutine, and neither do contexts whose deadline is no earlier
// than c.Timeout from now: the client's own timeout ends the call first.
// So set c.Timeout at or below Config.CacheTimeout (default 50ms): every
// operation then runs on the caller's goroutine, which on a busy hit path
// saves a goroutine, a channel and a timer per cache read.
//
// Keys, TTLs and value sizes are checked before anything is sent: a refused
// large value would make gomemcache drop its connection. A value over
// MaxValueSize passed to Set also deletes the key's current value, as
// memcached itself does when it refuses a set, so no stale value survives a
// failed overwrite.
//
// When an operation finds its connection dead (memcached restarted, a
// network cut), the adapter closes c's idle connections (c.Close): they
// are likely dead too, and c dials afresh.
//
// Memcache(nil) returns a Cache whose every operation fails with
// ErrNilClient.
func Memcache(c *memcache.Client) Cache {
	return &memcacheCache{c: c}
}

// MemcacheConfig configures NewMemcache. The zero value of every field but
// Servers is a documented default.
type MemcacheConfig struct {
	// Servers are memcached's addresses, host:port or a unix socket path;
	// at least one. Keys are spread over them as gomemcache.ServerList
	// spreads them, so other gomemcache clients on the same list agree.
	Servers []string
	// Timeout bounds each operation's socket I/O. Default
	// DefaultCacheTimeout (50ms), which keeps every operation on the
	// caller's goroutine under the default Config.CacheTimeout.
	Timeout time.Duration
	// MaxIdleConns is how many idle connections are kept per server, for
	// reads and for writes each. Default 64: above it every operation
	// dials, so size it at the expected concurrency.
	MaxIdleConns int
}

// NewMemcache returns a Cache on memcached whose client cachedsql owns.
// It differs from Memcache(c) in its reads: they go over connections of
// its own, one pipelined request per server on the caller's goroutine,
// where gomemcache's GetMulti costs a goroutine, a channel and maps per
// call — the difference is most of a cached hit's allocations. Writes go
// through a gomemcache client on the same servers. The Cache it returns
// also implements io.Closer, which closes its idle connections.
func NewMemcache(cfg MemcacheConfig) (Cache, error) {
	if len(cfg.Servers) == 0 {
		return nil, fmt.Errorf("%w: NewMemcache: no servers", ErrConfig)
	}
	if cfg.Timeout < 0 || cfg.MaxIdleConns < 0 {
		return nil, fmt.Errorf("%w: NewMemcache: negative Timeout or MaxIdleConns", ErrConfig)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultCacheTimeout
	}
	if cfg.MaxIdleConns == 0 {
		cfg.MaxIdleConns = defaultMemcacheIdleConns
	}
	servers := new(memcache.ServerList)
	if err := servers.SetServers(cfg.Servers...); err != nil {
		return nil, fmt.Errorf("%w: NewMemcache: %w", ErrConfig, err)
	}
	client := memcache.NewFromSelector(servers)
	client.Timeout = cfg.Timeout
	client.MaxIdleConns = cfg.MaxIdleConns
	return &memcacheCache{c: client, reader: newRawReader(servers, cfg.Timeout, cfg.MaxIdleConns)}, nil
}

// defaultMemcacheIdleConns is NewMemcache's default pool size per server.
const defaultMemcacheIdleConns = 64

// memcacheCache adapts *memcache.Client to Cache. It holds no state of its
// own but reader's pool: c and reader are safe for concurrent use.
type memcacheCache struct {
	c *memcache.Client
	// reader, when set (NewMemcache), serves every read; c only writes.
	reader *rawReader
}

// Close closes the idle connections of a Cache built by NewMemcache; one
// built by Memcache(c) leaves c to its owner.
func (m *memcacheCache) Close() error {
	if m.reader == nil {
		return nil
	}
	m.reader.close()
	return m.c.Close()
}

// synchronous reports whether an operation may run on the caller's
// goroutine: ctx can never be done, or the client's own timeout ends the
// call no later than ctx's deadline (within a millisecond: the budget was
// set a moment ago).
func (m *memcacheCache) synchronous(ctx context.Context, lazyCancel bool) bool {
	if ctx.Done() == nil {
		return true
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return lazyCancel // see pairGetter
	}
	timeout := m.c.Timeout
	if timeout <= 0 {
		timeout = memcache.DefaultTimeout
	}
	return timeout <= time.Until(deadline)+time.Millisecond
}

// boundedBy reports whether the client's own timeout ends every operation
// within budget: then an operation under a context that can never be done
// needs no deadline of the guard's (synchronous would ignore it anyway).
func (m *memcacheCache) boundedBy(budget time.Duration) bool {
	if m.c == nil {
		return true // every operation fails at once
	}
	timeout := m.c.Timeout
	if timeout <= 0 {
		timeout = memcache.DefaultTimeout
	}
	return timeout <= budget
}

// checkCache reports a Cache that cannot work whatever the server does:
// one built by Memcache(nil). A nil Cache is not an error here: Config reads
// it as "cache nothing". Configuration validation calls it.
func checkCache(c Cache) error {
	if m, ok := c.(*memcacheCache); ok && (m == nil || m.c == nil) {
		return ErrNilClient
	}
	return nil
}

func (m *memcacheCache) GetMulti(ctx context.Context, keys []string) (map[string]*Item, error) {
	if err := m.checkGet(ctx, keys); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return map[string]*Item{}, nil
	}
	if m.reader != nil {
		found := make([]Item, len(keys))
		if err := m.reader.get(ctx, keys, found, false); err != nil {
			m.dropDeadConns(err)
			return nil, err
		}
		out := make(map[string]*Item, len(keys))
		for i := range found {
			if found[i].Key != "" {
				out[found[i].Key] = &found[i]
			}
		}
		return out, nil
	}
	res, err := m.get(ctx, keys, false)
	if err != nil {
		return nil, err
	}
	return convertItems(res), nil
}

// getPair is GetMulti of two keys without a result map (the read path's
// entry and generation keys): nil for a key not found.
func (m *memcacheCache) getPair(ctx context.Context, k1, k2 string, lazyCancel bool) (*Item, *Item, error) {
	pair := [2]string{k1, k2} // on the stack: the reader keeps no slice
	if err := m.checkGet(ctx, pair[:]); err != nil {
		return nil, nil, err
	}
	if m.reader != nil {
		items := new([2]Item)
		if err := m.reader.get(ctx, pair[:], items[:], lazyCancel); err != nil {
			m.dropDeadConns(err)
			return nil, nil, err
		}
		var i1, i2 *Item
		if items[0].Key != "" {
			i1 = &items[0]
		}
		if items[1].Key != "" {
			i2 = &items[1]
		}
		return i1, i2, nil
	}
	res, err := m.get(ctx, []string{k1, k2}, lazyCancel)
	if err != nil {
		return nil, nil, err
	}
	r1, r2 := res[k1], res[k2]
	if r1 == nil && r2 == nil {
		return nil, nil, nil
	}
	items := new([2]Item)
	var i1, i2 *Item
	if r1 != nil {
		items[0] = Item{Key: k1, Value: r1.Value, CasID: r1.CasID}
		i1 = &items[0]
	}
	if r2 != nil {
		items[1] = Item{Key: k2, Value: r2.Value, CasID: r2.CasID}
		i2 = &items[1]
	}
	return i1, i2, nil
}

// checkGet is what GetMulti checks before anything is sent.
func (m *memcacheCache) checkGet(ctx context.Context, keys []string) error {
	if m.c == nil {
		return ErrNilClient
	}
	if err := ctx.Err(); err != nil {
		return opError("memcache", "get", "", err)
	}
	for _, k := range keys {
		if !validKey(k) {
			return opError("memcache", "get", k, ErrBadKey)
		}
	}
	return nil
}

// get runs gomemcache's GetMulti for keys (checked, at least one).
func (m *memcacheCache) get(ctx context.Context, keys []string, lazyCancel bool) (map[string]*memcache.Item, error) {
	if m.synchronous(ctx, lazyCancel) {
		res, err := m.c.GetMulti(keys)
		m.dropDeadConns(err)
		return res, getError(err, keys)
	}
	type result struct {
		res map[string]*memcache.Item
		err error
	}
	done := make(chan result, 1) // buffered: the goroutine never blocks if abandoned
	go func() {
		res, err := m.c.GetMulti(keys)
		m.dropDeadConns(err)
		done <- result{res, err}
	}()
	select {
	case r := <-done:
		return r.res, getError(r.err, keys)
	case <-ctx.Done():
		return nil, opError("memcache", "get", firstKey(keys), ctx.Err())
	}
}

// getError maps a failed GetMulti's error. A partial result is useless to
// the protocols (they treat a failed GetMulti as a miss of everything), so
// callers return no items with it.
func getError(err error, keys []string) error {
	if err != nil {
		return mapMemcacheError("get", firstKey(keys), err)
	}
	return nil
}

// convertItems turns gomemcache's result into ours. gomemcache reads every
// value into a fresh slice, so the values are handed over without a copy;
// all Items share one allocation.
func convertItems(res map[string]*memcache.Item) map[string]*Item {
	out := make(map[string]*Item, len(res))
	items := make([]Item, len(res))
	i := 0
	for k, it := range res {
		items[i] = Item{Key: k, Value: it.Value, CasID: it.CasID}
		out[k] = &items[i]
		i++
	}
	return out
}

func firstKey(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	return keys[0]
}

func (m *memcacheCache) Add(ctx context.Context, item *Item) error {
	return m.store(ctx, "add", item)
}

func (m *memcacheCache) CompareAndSwap(ctx context.Context, item *Item) error {
	return m.store(ctx, "cas", item)
}

func (m *memcacheCache) Set(ctx context.Context, item *Item) error {
	return m.store(ctx, "set", item)
}

func (m *memcacheCache) store(ctx context.Context, op string, item *Item) error {
	if m.c == nil {
		return ErrNilClient
	}
	if item == nil {
		return opError("memcache", op, "", errNilItem)
	}
	if err := ctx.Err(); err != nil {
		return opError("memcache", op, item.Key, err)
	}
	exp, err := checkItem("memcache", op, item)
	if err != nil {
		if op == "set" && errors.Is(err, ErrValueTooLarge) {
			// memcached unlinks the old value when it refuses a set;
			// do the same so a failed overwrite leaves nothing stale.
			if derr := m.Delete(ctx, item.Key); derr != nil && !errors.Is(derr, ErrCacheMiss) {
				return errors.Join(err, derr)
			}
		}
		return err
	}
	// A copy: gomemcache must not see later changes to *item, and *item
	// must not be written by gomemcache.
	mi := &memcache.Item{Key: item.Key, Value: item.Value, Expiration: exp, CasID: item.CasID}
	if m.synchronous(ctx, false) {
		return mapMemcacheError(op, item.Key, m.call(op, mi))
	}
	done := make(chan error, 1) // buffered: the goroutine never blocks if abandoned
	go func() { done <- m.call(op, mi) }()
	select {
	case err := <-done:
		return mapMemcacheError(op, item.Key, err)
	case <-ctx.Done():
		return opError("memcache", op, item.Key, ctx.Err())
	}
}

func (m *memcacheCache) call(op string, mi *memcache.Item) error {
	var err error
	switch op {
	case "add":
		err = m.c.Add(mi)
	case "cas":
		err = m.c.CompareAndSwap(mi)
	default:
		err = m.c.Set(mi)
	}
	m.dropDeadConns(err)
	return err
}

func (m *memcacheCache) delete(key string) error {
	err := m.c.Delete(key)
	m.dropDeadConns(err)
	return err
}

// dropDeadConns closes the client's idle connections after a connection
// was found dead. The others likely are too (memcached restarted, a
// network cut): left in the pool, each would fail one operation in turn,
// and the circuit breaker, probing once a second, would keep the cache
// off for as many seconds as the pool holds connections. gomemcache dials
// afresh when its pool is empty.
func (m *memcacheCache) dropDeadConns(err error) {
	if deadConnection(err) {
		m.c.Close()
		if m.reader != nil {
			m.reader.close() // NewMemcache: the reads' pool is as dead
		}
	}
}

// deadConnection reports an error that says the connection is gone
// (closed or reset by the other end). Timeouts are not: a slow server's
// other connections are fine, and dropping them on every timeout would
// make a loaded cache dial more and time out more.
func deadConnection(err error) bool {
	return err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed))
}

func (m *memcacheCache) Delete(ctx context.Context, key string) error {
	if m.c == nil {
		return ErrNilClient
	}
	if err := ctx.Err(); err != nil {
		return opError("memcache", "delete", key, err)
	}
	if !validKey(key) {
		return opError("memcache", "delete", key, ErrBadKey)
	}
	if m.synchronous(ctx, false) {
		return mapMemcacheError("delete", key, m.delete(key))
	}
	done := make(chan error, 1) // buffered: the goroutine never blocks if abandoned
	go func() { done <- m.delete(key) }()
	select {
	case err := <-done:
		return mapMemcacheError("delete", key, err)
	case <-ctx.Done():
		return opError("memcache", "delete", key, ctx.Err())
	}
}

// mapMemcacheError translates gomemcache's errors to ours. The outcomes the
// protocols branch on every day (miss, not stored, conflict) come back as the
// bare sentinels, without an allocation.
func mapMemcacheError(op, key string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, memcache.ErrCacheMiss):
		return ErrCacheMiss
	case errors.Is(err, memcache.ErrNotStored):
		return ErrNotStored
	case errors.Is(err, memcache.ErrCASConflict):
		return ErrCASConflict
	case errors.Is(err, memcache.ErrMalformedKey):
		return opError("memcache", op, key, ErrBadKey)
	case strings.Contains(err.Error(), "SERVER_ERROR object too large"):
		// A server started with a smaller -I than MaxValueSize assumes.
		return fmt.Errorf("cachedsql: memcache %s %s: %w (server: %v)", op, key, ErrValueTooLarge, err)
	}
	return opError("memcache", op, key, err)
}

func opError(backend, op, key string, err error) error {
	if key == "" {
		return fmt.Errorf("cachedsql: %s %s: %w", backend, op, err)
	}
	if !validKey(key) {
		return fmt.Errorf("cachedsql: %s %s %q: %w", backend, op, key, err)
	}
	return fmt.Errorf("cachedsql: %s %s %s: %w", backend, op, key, err)
}

// validKey is memcached's rule for text-protocol keys: 1 to MaxKeyLength
// bytes, no space, no control character.
func validKey(key string) bool {
	if len(key) == 0 || len(key) > MaxKeyLength {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// checkItem validates item against the limits every backend shares and
// returns its expiration in memcached's form: whole seconds, relative.
func checkItem(backend, op string, item *Item) (int32, error) {
	if !validKey(item.Key) {
		return 0, opError(backend, op, item.Key, ErrBadKey)
	}
	if len(item.Value) > MaxValueSize {
		return 0, fmt.Errorf("cachedsql: %s %s %s: %w (%d bytes, limit %d)",
			backend, op, item.Key, ErrValueTooLarge, len(item.Value), MaxValueSize)
	}
	secs, ok := ttlSeconds(item.TTL)
	if !ok {
		return 0, fmt.Errorf("cachedsql: %s %s %s: %w (%v, want 0 to %v)",
			backend, op, item.Key, ErrBadTTL, item.TTL, MaxTTL)
	}
	return secs, nil
}

// ttlSeconds rounds ttl up to whole seconds, so that a sub-second TTL still
// expires (0 would mean never). Above MaxTTL memcached would read the number
// as an absolute Unix time, so it is refused, as are negative TTLs.
func ttlSeconds(ttl time.Duration) (int32, bool) {
	if ttl < 0 || ttl > MaxTTL {
		return 0, false
	}
	return int32((ttl + time.Second - 1) / time.Second), true
}
