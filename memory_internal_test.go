package cachedsql

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for memoryCache.now.
type fakeClock struct {
	mu sync.Mutex // protects t
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func newTestMemory(maxBytes int64) (*memoryCache, *fakeClock) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	m := NewMemoryCache(maxBytes).(*memoryCache)
	m.now = clock.now
	return m, clock
}

// checkInvariants verifies the byte count against the items and the LRU
// list against the map.
func checkInvariants(t *testing.T, m *memoryCache) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bytes > m.maxBytes {
		t.Fatalf("bytes = %d; exceeds maxBytes %d", m.bytes, m.maxBytes)
	}
	var sum int64
	n := 0
	for e := m.lru.next; e != &m.lru; e = e.next {
		if m.items[e.key] != e {
			t.Fatalf("LRU entry %q not in the map", e.key)
		}
		sum += e.size()
		n++
	}
	if n != len(m.items) || sum != m.bytes {
		t.Fatalf("LRU holds %d entries, %d bytes; map %d entries, bytes %d", n, sum, len(m.items), m.bytes)
	}
}

func TestMemoryDefaultBound(t *testing.T) {
	for _, n := range []int64{0, -1} {
		if got := NewMemoryCache(n).(*memoryCache).maxBytes; got != DefaultMemoryCacheBytes {
			t.Errorf("NewMemoryCache(%d) bound = %d; want %d", n, got, DefaultMemoryCacheBytes)
		}
	}
}

func TestMemoryByteBound(t *testing.T) {
	const maxBytes = 64 << 10
	m, _ := newTestMemory(maxBytes)
	ctx := context.Background()
	var written int64
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; written < 10*maxBytes; i++ {
		k := fmt.Sprintf("k%d", rng.IntN(400))
		v := make([]byte, rng.IntN(4<<10))
		var err error
		switch i % 4 {
		case 0, 1:
			err = m.Set(ctx, &Item{Key: k, Value: v})
		case 2:
			err = m.Add(ctx, &Item{Key: k, Value: v})
		case 3:
			got, gerr := m.GetMulti(ctx, []string{k})
			if gerr != nil {
				t.Fatal(gerr)
			}
			if it := got[k]; it != nil {
				err = m.CompareAndSwap(ctx, &Item{Key: k, Value: v, CasID: it.CasID})
			}
		}
		if err != nil && !errors.Is(err, ErrNotStored) {
			t.Fatalf("op %d: %v", i, err)
		}
		written += int64(len(k) + len(v))
		checkInvariants(t, m)
	}
	if len(m.items) == 0 {
		t.Fatal("cache empty after writing 10x its bound")
	}
}

func TestMemoryByteBoundConcurrent(t *testing.T) {
	const maxBytes = 32 << 10
	m, _ := newTestMemory(maxBytes)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				k := fmt.Sprintf("k%d", (g*31+i)%200)
				_ = m.Set(ctx, &Item{Key: k, Value: make([]byte, i%1500)})
				_, _ = m.GetMulti(ctx, []string{k, "k1", "k2"})
				_ = m.Delete(ctx, fmt.Sprintf("k%d", i%200))
				m.mu.Lock()
				over := m.bytes > m.maxBytes
				m.mu.Unlock()
				if over {
					t.Errorf("bytes exceeded maxBytes")
					return
				}
			}
		})
	}
	wg.Wait()
	checkInvariants(t, m)
}

func TestMemoryLRUEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	val := make([]byte, 100)
	per := (&memEntry{key: "a", value: val}).size()
	m, _ := newTestMemory(3 * per) // room for exactly three items
	for _, k := range []string{"a", "b", "c"} {
		if err := m.Set(ctx, &Item{Key: k, Value: val}); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := m.GetMulti(ctx, []string{"b"})
	idB := got["b"].CasID
	// Reads count as use: most recent first, a c b.
	if got, _ = m.GetMulti(ctx, []string{"c", "a"}); len(got) != 2 {
		t.Fatal("a or c missing before any eviction")
	}
	if err := m.Set(ctx, &Item{Key: "d", Value: val}); err != nil { // evicts b
		t.Fatal(err)
	}
	if err := m.Add(ctx, &Item{Key: "c", Value: val}); !errors.Is(err, ErrNotStored) { // a failed add still counts as use
		t.Fatalf("Add(c) = %v; want ErrNotStored", err)
	}
	if err := m.Set(ctx, &Item{Key: "e", Value: val}); err != nil { // evicts a
		t.Fatal(err)
	}
	got, _ = m.GetMulti(ctx, []string{"a", "b", "c", "d", "e"})
	for k, want := range map[string]bool{"a": false, "b": false, "c": true, "d": true, "e": true} {
		if (got[k] != nil) != want {
			t.Errorf("after evictions, %s present = %v; want %v", k, got[k] != nil, want)
		}
	}
	if err := m.CompareAndSwap(ctx, &Item{Key: "b", Value: val, CasID: idB}); !errors.Is(err, ErrCacheMiss) {
		t.Errorf("CompareAndSwap on an evicted item = %v; want ErrCacheMiss", err)
	}
	checkInvariants(t, m)
}

func TestMemoryItemLargerThanBound(t *testing.T) {
	ctx := context.Background()
	m, _ := newTestMemory(1 << 10)
	if err := m.Set(ctx, &Item{Key: "k", Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, &Item{Key: "small", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	// Stored and at once evicted: success, and the old value is gone.
	if err := m.Set(ctx, &Item{Key: "k", Value: make([]byte, 2<<10)}); err != nil {
		t.Fatalf("Set larger than the bound = %v; want nil", err)
	}
	got, _ := m.GetMulti(ctx, []string{"k", "small"})
	if got["k"] != nil {
		t.Error("old value survived an overwrite larger than the bound")
	}
	if got["small"] == nil {
		t.Error("an item larger than the bound evicted other items")
	}
	checkInvariants(t, m)
}

func TestMemoryTTLFakeClock(t *testing.T) {
	ctx := context.Background()
	m, clock := newTestMemory(0)
	base := time.Unix(1_000_000, 0)
	present := func(k string) bool {
		got, err := m.GetMulti(ctx, []string{k})
		if err != nil {
			t.Fatal(err)
		}
		return got[k] != nil
	}
	set := func(k string, ttl time.Duration) {
		if err := m.Set(ctx, &Item{Key: k, Value: []byte("x"), TTL: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		at   time.Duration // since base
		do   func()
		key  string
		want bool
	}{
		// Set late in a second with TTL 1 s: gone at the next second, as
		// on memcached's one-second clock (early by up to 1 s).
		{at: 900 * time.Millisecond, do: func() { set("late", time.Second) }},
		{at: 999 * time.Millisecond, key: "late", want: true},
		{at: time.Second, key: "late", want: false},
		// Set at a second boundary with TTL 2 s: lives exactly 2 s.
		{at: 2 * time.Second, do: func() { set("two", 2*time.Second) }},
		{at: 3999 * time.Millisecond, key: "two", want: true},
		{at: 4 * time.Second, key: "two", want: false},
		// 1.5 s rounds up to 2 s; 1 ns to 1 s (never to 0, "no expiry").
		{at: 10 * time.Second, do: func() { set("frac", 1500*time.Millisecond); set("ns", time.Nanosecond) }},
		{at: 10*time.Second + 999*time.Millisecond, key: "ns", want: true},
		{at: 11 * time.Second, key: "ns", want: false},
		{at: 11*time.Second + 999*time.Millisecond, key: "frac", want: true},
		{at: 12 * time.Second, key: "frac", want: false},
		// No TTL: forever.
		{at: 20 * time.Second, do: func() { set("forever", 0) }},
		{at: MaxTTL * 10, key: "forever", want: true},
	}
	for _, s := range steps {
		clock.set(base.Add(s.at))
		if s.do != nil {
			s.do()
			continue
		}
		if got := present(s.key); got != s.want {
			t.Errorf("at +%v, %s present = %v; want %v", s.at, s.key, got, s.want)
		}
	}

	// An expired item is a miss for cas and no obstacle to add.
	clock.set(base.Add(100 * time.Second))
	set("cas", time.Second)
	got, _ := m.GetMulti(ctx, []string{"cas"})
	id := got["cas"].CasID
	clock.set(base.Add(101 * time.Second))
	if err := m.CompareAndSwap(ctx, &Item{Key: "cas", Value: []byte("y"), CasID: id}); !errors.Is(err, ErrCacheMiss) {
		t.Errorf("CompareAndSwap on an expired item = %v; want ErrCacheMiss", err)
	}
	set("add", time.Second)
	clock.set(base.Add(102 * time.Second))
	if err := m.Add(ctx, &Item{Key: "add", Value: []byte("y")}); err != nil {
		t.Errorf("Add over an expired item = %v; want nil", err)
	}
	checkInvariants(t, m)
}

// TestMemoryGetMultiAllocs keeps the hit path lean: the map, one block of
// Items and one of value bytes, whatever the number of hits.
func TestMemoryGetMultiAllocs(t *testing.T) {
	ctx := context.Background()
	m, _ := newTestMemory(0)
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, k := range keys {
		if err := m.Set(ctx, &Item{Key: k, Value: []byte("value")}); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(100, func() { _, _ = m.GetMulti(ctx, keys) })
	if allocs > 4 {
		t.Errorf("GetMulti of %d hits: %v allocations; want <= 4", len(keys), allocs)
	}
}

func TestCheckCache(t *testing.T) {
	if err := checkCache(Memcache(nil)); !errors.Is(err, ErrNilClient) {
		t.Errorf("checkCache(Memcache(nil)) = %v; want ErrNilClient", err)
	}
	for _, c := range []Cache{nil, NewMemoryCache(0)} {
		if err := checkCache(c); err != nil {
			t.Errorf("checkCache(%T) = %v; want nil", c, err)
		}
	}
}
