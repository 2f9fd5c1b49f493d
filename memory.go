package cachedsql

import (
	"context"
	"sync"
	"time"
)

// DefaultMemoryCacheBytes is the bound NewMemoryCache uses when given
// maxBytes <= 0.
const DefaultMemoryCacheBytes = 64 << 20

// memItemOverhead is what each item costs beyond its key and value bytes,
// roughly memcached's item header plus our map entry and list links. It
// keeps a cache of many tiny items (tombstones, leases) honestly bounded.
const memItemOverhead = 64

// NewMemoryCache returns an in-process Cache holding at most maxBytes,
// counting each item's key, value and a fixed per-item overhead, evicting
// the least recently used items (reads and writes both count as use) to make
// room. maxBytes <= 0 means DefaultMemoryCacheBytes.
//
// It has memcached's semantics, pinned by the same conformance suite: Add
// reports no cas id, every store gets a new unique cas id, CompareAndSwap on
// a missing, expired or evicted item returns ErrCacheMiss, Delete of a
// missing key returns ErrCacheMiss, and the key, value and TTL limits are
// memcached's. An item larger than maxBytes is treated as stored and at once
// evicted: the store succeeds and leaves the key empty.
//
// Expiry mimics memcached's one-second clock: an item set at wall time t
// with a TTL of n seconds (rounded up) expires when the clock reaches
// second floor(t)+n, so it lives between n-1 and n seconds. Use TTLs of at
// least 2 s for anything that must outlive a round trip.
//
// The cache lives in one process: it cannot coordinate several processes
// sharing a database. Use it for tests and single-process deployments.
// Values stored and returned through the Cache methods are copies, so
// neither the caller's slices nor the cache's can be changed behind the
// other's back. (cachedsql's own hit path reads the stored values in
// place, and never writes them.)
func NewMemoryCache(maxBytes int64) Cache {
	if maxBytes <= 0 {
		maxBytes = DefaultMemoryCacheBytes
	}
	m := &memoryCache{
		maxBytes: maxBytes,
		now:      time.Now,
		items:    make(map[string]*memEntry),
	}
	m.lru.next, m.lru.prev = &m.lru, &m.lru // empty ring
	return m
}

// memoryCache is the in-process backend.
type memoryCache struct {
	// Set at construction, read-only afterwards (now may be replaced by
	// tests before first use).
	maxBytes int64
	now      func() time.Time

	mu    sync.Mutex // protects items, lru, bytes, casID
	items map[string]*memEntry
	lru   memEntry // sentinel of a circular list, most recently used first
	bytes int64    // sum of size() over items
	casID uint64   // last cas id handed out
}

// memEntry is one stored item and its place in the LRU list.
type memEntry struct {
	key        string
	value      []byte
	cas        uint64
	expires    int64 // Unix second at which the item is gone; 0: never
	prev, next *memEntry
}

func (e *memEntry) size() int64 {
	return int64(len(e.key)) + int64(len(e.value)) + memItemOverhead
}

// boundedBy reports true: the in-process cache waits on nothing but its
// own lock, whatever the budget.
func (m *memoryCache) boundedBy(time.Duration) bool { return true }

// unixSecond is the current time on memcached's one-second clock.
func (m *memoryCache) unixSecond() int64 {
	return m.now().Unix()
}

func (m *memoryCache) GetMulti(ctx context.Context, keys []string) (map[string]*Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, opError("memory cache", "get", firstKey(keys), err)
	}
	for _, k := range keys {
		if !validKey(k) {
			return nil, opError("memory cache", "get", k, ErrBadKey)
		}
	}
	now := m.unixSecond()
	out := make(map[string]*Item, len(keys))
	var stack [16]*memEntry
	hits := stack[:0]
	total := 0
	m.mu.Lock()
	for _, k := range keys {
		if e := m.lookup(k, now); e != nil {
			hits = append(hits, e)
			total += len(e.value)
			m.moveToFront(e)
		}
	}
	if len(hits) == 0 {
		m.mu.Unlock()
		return out, nil
	}
	// One block for the Items and one for the copied values; each value
	// is capped so that appending to it cannot reach its neighbour.
	items := make([]Item, len(hits))
	buf := make([]byte, total)
	for i, e := range hits {
		n := copy(buf, e.value)
		items[i] = Item{Key: e.key, Value: buf[:n:n], CasID: e.cas}
		buf = buf[n:]
		out[e.key] = &items[i]
	}
	m.mu.Unlock()
	return out, nil
}

// getPair is GetMulti of two keys without a result map or copies (the read path's
// entry and generation keys): nil for a key not found. Values are copied,
// as GetMulti copies them, into one block.
func (m *memoryCache) getPair(ctx context.Context, k1, k2 string, _ bool) (*Item, *Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, opError("memory cache", "get", k1, err)
	}
	for _, k := range [2]string{k1, k2} {
		if !validKey(k) {
			return nil, nil, opError("memory cache", "get", k, ErrBadKey)
		}
	}
	now := m.unixSecond()
	m.mu.Lock()
	defer m.mu.Unlock()
	e1 := m.lookup(k1, now)
	if e1 != nil {
		m.moveToFront(e1)
	}
	e2 := m.lookup(k2, now)
	if e2 != nil {
		m.moveToFront(e2)
	}
	if e1 == nil && e2 == nil {
		return nil, nil, nil
	}
	// The stored values themselves, capped: a stored value is never
	// written (a store replaces the entry), and getPair's callers only
	// read (see pairGetter).
	items := new([2]Item)
	var i1, i2 *Item
	if e1 != nil {
		items[0] = Item{Key: e1.key, Value: e1.value[:len(e1.value):len(e1.value)], CasID: e1.cas}
		i1 = &items[0]
	}
	if e2 != nil {
		items[1] = Item{Key: e2.key, Value: e2.value[:len(e2.value):len(e2.value)], CasID: e2.cas}
		i2 = &items[1]
	}
	return i1, i2, nil
}

func (m *memoryCache) Add(ctx context.Context, item *Item) error {
	return m.store(ctx, "add", item)
}

func (m *memoryCache) CompareAndSwap(ctx context.Context, item *Item) error {
	return m.store(ctx, "cas", item)
}

func (m *memoryCache) Set(ctx context.Context, item *Item) error {
	return m.store(ctx, "set", item)
}

func (m *memoryCache) store(ctx context.Context, op string, item *Item) error {
	if item == nil {
		return opError("memory cache", op, "", errNilItem)
	}
	if err := ctx.Err(); err != nil {
		return opError("memory cache", op, item.Key, err)
	}
	secs, err := checkItem("memory cache", op, item)
	if err != nil {
		if op == "set" && len(item.Value) > MaxValueSize && validKey(item.Key) {
			// memcached unlinks the old value when it refuses a set.
			m.mu.Lock()
			if e := m.items[item.Key]; e != nil {
				m.remove(e)
			}
			m.mu.Unlock()
		}
		return err
	}
	now := m.unixSecond()
	var expires int64
	if secs > 0 {
		expires = now + int64(secs)
	}
	// Copy outside the lock; the caller may reuse item.Value afterwards.
	value := clone(item.Value)
	if value == nil {
		value = []byte{}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.lookup(item.Key, now)
	switch op {
	case "add":
		if old != nil {
			// memcached's add bumps the existing item in the LRU.
			m.moveToFront(old)
			return ErrNotStored
		}
	case "cas":
		if old == nil {
			return ErrCacheMiss
		}
		if old.cas != item.CasID {
			return ErrCASConflict
		}
	}
	if old != nil {
		m.remove(old)
	}
	m.casID++
	e := &memEntry{key: item.Key, value: value, cas: m.casID, expires: expires}
	sz := e.size()
	if sz > m.maxBytes {
		return nil // stored and at once evicted: the key stays empty
	}
	for m.bytes+sz > m.maxBytes {
		m.remove(m.lru.prev) // least recently used
	}
	m.items[e.key] = e
	m.bytes += sz
	m.pushFront(e)
	return nil
}

func (m *memoryCache) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return opError("memory cache", "delete", key, err)
	}
	if !validKey(key) {
		return opError("memory cache", "delete", key, ErrBadKey)
	}
	now := m.unixSecond()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.lookup(key, now)
	if e == nil {
		return ErrCacheMiss
	}
	m.remove(e)
	return nil
}

// lookup returns the live entry for key, dropping it if it has expired.
// m.mu must be held.
func (m *memoryCache) lookup(key string, now int64) *memEntry {
	e := m.items[key]
	if e == nil {
		return nil
	}
	if e.expires != 0 && e.expires <= now {
		m.remove(e)
		return nil
	}
	return e
}

// remove unlinks e from the map and the list. m.mu must be held.
func (m *memoryCache) remove(e *memEntry) {
	delete(m.items, e.key)
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
	m.bytes -= e.size()
}

// pushFront links e as the most recently used. m.mu must be held.
func (m *memoryCache) pushFront(e *memEntry) {
	e.prev = &m.lru
	e.next = m.lru.next
	e.next.prev = e
	m.lru.next = e
}

// moveToFront marks e as just used. m.mu must be held.
func (m *memoryCache) moveToFront(e *memEntry) {
	if m.lru.next == e {
		return
	}
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev = &m.lru
	e.next = m.lru.next
	e.next.prev = e
	m.lru.next = e
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}
