// Package cachetest is the conformance suite every cachedsql.Cache backend
// passes: it pins the memcached behaviours the fill and flush protocols rely
// on (design brief §2, "memcached facts"), so that the in-process backend,
// the fake server and a real memcached are interchangeable.
package cachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachedsql/cachedsql"
)

// Option adjusts Run.
type Option func(*config)

type config struct {
	evict func(t *testing.T, c cachedsql.Cache, key string)
}

// Evict gives the suite a way to evict key from the backend, for the case
// "CompareAndSwap after eviction returns ErrCacheMiss". Without it the key
// is deleted: to a client, memcached's eviction and a delete by another
// client are indistinguishable.
func Evict(fn func(t *testing.T, c cachedsql.Cache, key string)) Option {
	return func(c *config) { c.evict = fn }
}

// ttlWait is how long after a store an item with a TTL of n seconds is
// surely gone: memcached's one-second clock is updated by a timer, so
// expiry may come up to a second late (or early).
func ttlWait(ttl time.Duration) time.Duration {
	return ttl + time.Second + 200*time.Millisecond
}

// Run runs the suite. newCache is called once per subtest; caches may share
// a server: every key carries a prefix unique to this run and subtest. The
// TTL subtests sleep about 3 s, in parallel with each other.
func Run(t *testing.T, newCache func(t *testing.T) cachedsql.Cache, opts ...Option) {
	cfg := config{
		evict: func(t *testing.T, c cachedsql.Cache, key string) {
			t.Helper()
			if err := c.Delete(context.Background(), key); err != nil {
				t.Fatalf("Delete(%q) to simulate eviction: %v", key, err)
			}
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	run := fmt.Sprintf("cachetest:%016x:", rand.Uint64())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.sleeps {
				// Sleeping subtests overlap; the rest run one at a time
				// so that a loaded CI machine does not starve them.
				t.Parallel()
			}
			s := &suite{
				T:      t,
				c:      newCache(t),
				cfg:    &cfg,
				prefix: run + tc.name + ":",
			}
			tc.fn(s)
		})
	}
}

type suite struct {
	*testing.T
	c      cachedsql.Cache
	cfg    *config
	prefix string
}

// key returns a key unique to this run and subtest.
func (s *suite) key(name string) string { return s.prefix + name }

var bg = context.Background()

func (s *suite) set(key string, value []byte, ttl time.Duration) {
	s.Helper()
	if err := s.c.Set(bg, &cachedsql.Item{Key: key, Value: value, TTL: ttl}); err != nil {
		s.Fatalf("Set(%q): %v", key, err)
	}
}

// get returns key's item, or nil when it is absent.
func (s *suite) get(key string) *cachedsql.Item {
	s.Helper()
	m, err := s.c.GetMulti(bg, []string{key})
	if err != nil {
		s.Fatalf("GetMulti(%q): %v", key, err)
	}
	if len(m) > 1 {
		s.Fatalf("GetMulti(%q) returned %d items", key, len(m))
	}
	it := m[key]
	if it != nil && it.Key != key {
		s.Fatalf("GetMulti(%q) item has Key %q", key, it.Key)
	}
	return it
}

func (s *suite) mustGet(key string, want []byte) *cachedsql.Item {
	s.Helper()
	it := s.get(key)
	if it == nil {
		s.Fatalf("GetMulti(%q): missing; want %q", key, short(want))
	}
	if !bytes.Equal(it.Value, want) {
		s.Fatalf("GetMulti(%q) = %q; want %q", key, short(it.Value), short(want))
	}
	if it.CasID == 0 {
		s.Fatalf("GetMulti(%q): CasID 0; want a cas id", key)
	}
	return it
}

func (s *suite) mustMiss(key string) {
	s.Helper()
	if it := s.get(key); it != nil {
		s.Fatalf("GetMulti(%q) = %q; want a miss", key, short(it.Value))
	}
}

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v; want %v", what, err, want)
	}
}

func wantOK(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func short(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%q...(%d bytes)", b[:40], len(b))
	}
	return string(b)
}

var cases = []struct {
	name   string
	fn     func(*suite)
	sleeps bool
}{
	{"GetMissing", testGetMissing, false},
	{"SetGet", testSetGet, false},
	{"GetMultiPartial", testGetMultiPartial, false},
	{"Overwrite", testOverwrite, false},
	{"AddExisting", testAddExisting, false},
	{"AddReportsNoCasID", testAddNoCasID, false},
	{"CASSucceeds", testCASSucceeds, false},
	{"CASConflictAfterSet", testCASConflict, false},
	{"CASIDsUniqueAndChanging", testCASIDs, false},
	{"CASMissing", testCASMissing, false},
	{"Delete", testDelete, false},
	{"BinaryValues", testBinaryValues, false},
	{"ValueTooLarge", testValueTooLarge, false},
	{"BadKeys", testBadKeys, false},
	{"BadTTL", testBadTTL, false},
	{"Copies", testCopies, false},
	{"ConcurrentAdd", testConcurrentAdd, false},
	{"ConcurrentCAS", testConcurrentCAS, false},
	{"ContextDone", testContextDone, false},
	{"CancellableContext", testCancellableContext, false},
	{"TTLExpiry", testTTLExpiry, true},
}

func testGetMissing(s *suite) {
	for _, keys := range [][]string{nil, {}, {s.key("a")}, {s.key("a"), s.key("b")}} {
		m, err := s.c.GetMulti(bg, keys)
		if err != nil {
			s.Fatalf("GetMulti(%q): %v", keys, err)
		}
		if m == nil || len(m) != 0 {
			s.Fatalf("GetMulti(%q) = %v; want an empty, non-nil map", keys, m)
		}
	}
}

func testSetGet(s *suite) {
	k := s.key("k")
	item := &cachedsql.Item{Key: k, Value: []byte("hello")}
	wantOK(s, "Set", s.c.Set(bg, item))
	if item.CasID != 0 || string(item.Value) != "hello" || item.Key != k {
		s.Fatalf("Set changed its item: %+v", item)
	}
	s.mustGet(k, []byte("hello"))
}

func testGetMultiPartial(s *suite) {
	a, b, c := s.key("a"), s.key("b"), s.key("c")
	s.set(a, []byte("A"), 0)
	s.set(c, []byte("C"), 0)
	m, err := s.c.GetMulti(bg, []string{a, b, c, a})
	wantOK(s, "GetMulti", err)
	if len(m) != 2 {
		s.Fatalf("GetMulti returned %d items; want 2 (a and c)", len(m))
	}
	if _, ok := m[b]; ok {
		s.Fatalf("GetMulti returned the missing key %q", b)
	}
	for k, want := range map[string]string{a: "A", c: "C"} {
		it := m[k]
		if it == nil || string(it.Value) != want || it.Key != k || it.CasID == 0 {
			s.Fatalf("GetMulti[%q] = %+v; want value %q with a cas id", k, it, want)
		}
	}
	if m[a].CasID == m[c].CasID {
		s.Fatalf("two items share cas id %d", m[a].CasID)
	}
}

func testOverwrite(s *suite) {
	k := s.key("k")
	s.set(k, []byte("v1"), 0)
	s.set(k, []byte("v2"), 0)
	s.mustGet(k, []byte("v2"))
}

func testAddExisting(s *suite) {
	k := s.key("k")
	s.set(k, []byte("first"), 0)
	wantErr(s, "Add on an existing key", s.c.Add(bg, &cachedsql.Item{Key: k, Value: []byte("second")}), cachedsql.ErrNotStored)
	s.mustGet(k, []byte("first"))
}

func testAddNoCasID(s *suite) {
	k := s.key("k")
	item := &cachedsql.Item{Key: k, Value: []byte("lease")}
	wantOK(s, "Add", s.c.Add(bg, item))
	if item.CasID != 0 {
		s.Fatalf("Add set CasID %d; memcached's add reports none", item.CasID)
	}
	// A stale id in the item is neither used nor overwritten.
	k2 := s.key("k2")
	item2 := &cachedsql.Item{Key: k2, Value: []byte("x"), CasID: 12345}
	wantOK(s, "Add with a CasID set", s.c.Add(bg, item2))
	if item2.CasID != 12345 {
		s.Fatalf("Add changed CasID to %d; want it untouched", item2.CasID)
	}
	// The id comes from a get, and works.
	it := s.mustGet(k, []byte("lease"))
	wantOK(s, "CompareAndSwap with the id read after Add",
		s.c.CompareAndSwap(bg, &cachedsql.Item{Key: k, Value: []byte("value"), CasID: it.CasID}))
	s.mustGet(k, []byte("value"))
	// Add after delete succeeds: the key holds nothing.
	wantOK(s, "Delete", s.c.Delete(bg, k))
	wantOK(s, "Add after Delete", s.c.Add(bg, &cachedsql.Item{Key: k, Value: []byte("again")}))
	s.mustGet(k, []byte("again"))
}

func testCASSucceeds(s *suite) {
	k := s.key("k")
	s.set(k, []byte("v1"), 0)
	it := s.mustGet(k, []byte("v1"))
	wantOK(s, "CompareAndSwap", s.c.CompareAndSwap(bg, &cachedsql.Item{Key: k, Value: []byte("v2"), CasID: it.CasID}))
	it2 := s.mustGet(k, []byte("v2"))
	if it2.CasID == it.CasID {
		s.Fatalf("cas id unchanged (%d) by a successful CompareAndSwap", it.CasID)
	}
	// The old id is spent.
	wantErr(s, "second CompareAndSwap with the same id",
		s.c.CompareAndSwap(bg, &cachedsql.Item{Key: k, Value: []byte("v3"), CasID: it.CasID}), cachedsql.ErrCASConflict)
	s.mustGet(k, []byte("v2"))
}

func testCASConflict(s *suite) {
	k := s.key("k")
	s.set(k, []byte("v1"), 0)
	it := s.mustGet(k, []byte("v1"))
	s.set(k, []byte("v1"), 0) // same bytes, new version
	wantErr(s, "CompareAndSwap after another Set",
		s.c.CompareAndSwap(bg, &cachedsql.Item{Key: k, Value: []byte("stale"), CasID: it.CasID}), cachedsql.ErrCASConflict)
	s.mustGet(k, []byte("v1"))
	// A zero id never matches a stored item.
	wantErr(s, "CompareAndSwap with CasID 0",
		s.c.CompareAndSwap(bg, &cachedsql.Item{Key: k, Value: []byte("stale")}), cachedsql.ErrCASConflict)
}

func testCASIDs(s *suite) {
	k, k2 := s.key("k"), s.key("k2")
	seen := map[uint64]string{}
	note := func(it *cachedsql.Item, what string) {
		s.Helper()
		if prev, ok := seen[it.CasID]; ok {
			s.Fatalf("cas id %d of %s was already the id of %s", it.CasID, what, prev)
		}
		seen[it.CasID] = what
	}
	s.set(k, []byte("v"), 0)
	note(s.mustGet(k, []byte("v")), "set 1")
	// Reading does not change the id.
	it := s.mustGet(k, []byte("v"))
	if _, ok := seen[it.CasID]; !ok {
		s.Fatalf("cas id changed from a get to the next without a write")
	}
	s.set(k, []byte("v"), 0)
	note(s.mustGet(k, []byte("v")), "set 2")
	wantOK(s, "Add", s.c.Add(bg, &cachedsql.Item{Key: k2, Value: []byte("v")}))
	note(s.mustGet(k2, []byte("v")), "add")
	cur := s.mustGet(k, []byte("v"))
	wantOK(s, "CompareAndSwap", s.c.CompareAndSwap(bg, &cachedsql.Item{Key: k, Value: []byte("v"), CasID: cur.CasID}))
	note(s.mustGet(k, []byte("v")), "cas")
}

func testCASMissing(s *suite) {
	k := s.key("never")
	wantErr(s, "CompareAndSwap on a key never stored",
		s.c.CompareAndSwap(bg, &cachedsql.Item{Key: k, Value: []byte("x"), CasID: 1}), cachedsql.ErrCacheMiss)
	s.mustMiss(k)

	d := s.key("deleted")
	s.set(d, []byte("x"), 0)
	it := s.mustGet(d, []byte("x"))
	wantOK(s, "Delete", s.c.Delete(bg, d))
	wantErr(s, "CompareAndSwap after Delete",
		s.c.CompareAndSwap(bg, &cachedsql.Item{Key: d, Value: []byte("y"), CasID: it.CasID}), cachedsql.ErrCacheMiss)
	s.mustMiss(d)

	e := s.key("evicted")
	s.set(e, []byte("x"), 0)
	it = s.mustGet(e, []byte("x"))
	s.cfg.evict(s.T, s.c, e)
	wantErr(s, "CompareAndSwap after eviction",
		s.c.CompareAndSwap(bg, &cachedsql.Item{Key: e, Value: []byte("y"), CasID: it.CasID}), cachedsql.ErrCacheMiss)
	s.mustMiss(e)
}

func testDelete(s *suite) {
	k := s.key("k")
	wantErr(s, "Delete of a missing key", s.c.Delete(bg, k), cachedsql.ErrCacheMiss)
	s.set(k, []byte("x"), 0)
	wantOK(s, "Delete", s.c.Delete(bg, k))
	s.mustMiss(k)
	wantErr(s, "second Delete", s.c.Delete(bg, k), cachedsql.ErrCacheMiss)
}

func testBinaryValues(s *suite) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := make([]byte, cachedsql.MaxValueSize)
	for i := range big {
		big[i] = byte(i * 7)
	}
	values := map[string][]byte{
		"all":   all,
		"proto": []byte("x\r\nEND\r\nVALUE k 0 1 1\r\n\r\n"),
		"nul":   {0, 0, 0},
		"crlf":  []byte("\r\n"),
		"empty": {},
		"max":   big,
	}
	for name, v := range values {
		k := s.key(name)
		s.set(k, v, 0)
		s.mustGet(k, v)
	}
	// A nil value stores an empty one.
	k := s.key("nil")
	s.set(k, nil, 0)
	s.mustGet(k, []byte{})
}

func testValueTooLarge(s *suite) {
	k := s.key("k")
	s.set(k, []byte("old"), 0)
	big := bytes.Repeat([]byte("z"), cachedsql.MaxValueSize+1)
	wantErr(s, "Add of a too large value", s.c.Add(bg, &cachedsql.Item{Key: s.key("absent"), Value: big}), cachedsql.ErrValueTooLarge)
	s.mustMiss(s.key("absent"))
	it := s.mustGet(k, []byte("old"))
	wantErr(s, "CompareAndSwap of a too large value",
		s.c.CompareAndSwap(bg, &cachedsql.Item{Key: k, Value: big, CasID: it.CasID}), cachedsql.ErrValueTooLarge)
	s.mustGet(k, []byte("old"))
	// Like memcached, a refused Set leaves nothing stale behind.
	wantErr(s, "Set of a too large value", s.c.Set(bg, &cachedsql.Item{Key: k, Value: big}), cachedsql.ErrValueTooLarge)
	s.mustMiss(k)
	// The client still works.
	s.set(k, []byte("after"), 0)
	s.mustGet(k, []byte("after"))
}

func testBadKeys(s *suite) {
	long := s.key(strings.Repeat("x", cachedsql.MaxKeyLength))[:cachedsql.MaxKeyLength+1]
	bad := []string{
		"",
		s.key("with space"),
		s.key("tab\t"),
		s.key("nl\n"),
		s.key("cr\r"),
		s.key("nul\x00"),
		s.key("del\x7f"),
		long,
	}
	for _, k := range bad {
		item := &cachedsql.Item{Key: k, Value: []byte("x"), CasID: 1}
		wantErr(s, fmt.Sprintf("Set(%q)", k), s.c.Set(bg, item), cachedsql.ErrBadKey)
		wantErr(s, fmt.Sprintf("Add(%q)", k), s.c.Add(bg, item), cachedsql.ErrBadKey)
		wantErr(s, fmt.Sprintf("CompareAndSwap(%q)", k), s.c.CompareAndSwap(bg, item), cachedsql.ErrBadKey)
		wantErr(s, fmt.Sprintf("Delete(%q)", k), s.c.Delete(bg, k), cachedsql.ErrBadKey)
		_, err := s.c.GetMulti(bg, []string{s.key("good"), k})
		wantErr(s, fmt.Sprintf("GetMulti(%q)", k), err, cachedsql.ErrBadKey)
	}
	// The limits are inclusive, keys are bytes, and the client still works.
	for _, k := range []string{long[:cachedsql.MaxKeyLength], s.key("ключ-é"), s.key("a:b/c|d{e}")} {
		s.set(k, []byte(k), 0)
		s.mustGet(k, []byte(k))
	}
}

func testBadTTL(s *suite) {
	for _, ttl := range []time.Duration{-time.Second, -time.Nanosecond, cachedsql.MaxTTL + time.Nanosecond, 365 * 24 * time.Hour} {
		k := s.key(fmt.Sprint(int64(ttl)))
		item := &cachedsql.Item{Key: k, Value: []byte("x"), TTL: ttl}
		wantErr(s, fmt.Sprintf("Set with TTL %v", ttl), s.c.Set(bg, item), cachedsql.ErrBadTTL)
		wantErr(s, fmt.Sprintf("Add with TTL %v", ttl), s.c.Add(bg, item), cachedsql.ErrBadTTL)
		wantErr(s, fmt.Sprintf("CompareAndSwap with TTL %v", ttl), s.c.CompareAndSwap(bg, item), cachedsql.ErrBadTTL)
		s.mustMiss(k)
	}
	// MaxTTL itself is relative: the item lives. (Sent as absolute, it
	// would be a time in 1970, already past.)
	k := s.key("max")
	s.set(k, []byte("x"), cachedsql.MaxTTL)
	s.mustGet(k, []byte("x"))
}

func testCopies(s *suite) {
	k := s.key("k")
	v := []byte("original")
	s.set(k, v, 0)
	copy(v, "XXXXXXXX")
	it := s.mustGet(k, []byte("original"))
	copy(it.Value, "YYYYYYYY")
	s.mustGet(k, []byte("original"))
	// Two reads never share bytes.
	m1, err := s.c.GetMulti(bg, []string{k})
	wantOK(s, "GetMulti", err)
	m2, err := s.c.GetMulti(bg, []string{k})
	wantOK(s, "GetMulti", err)
	m1[k].Value[0] = 'Z'
	if m2[k].Value[0] != 'o' {
		s.Fatalf("two GetMulti results share their value bytes")
	}
}

const contenders = 50

func testConcurrentAdd(s *suite) {
	k := s.key("k")
	ctx := s.Context() // cancellable: the goroutine path of Memcache
	var wg sync.WaitGroup
	errs := make([]error, contenders)
	start := make(chan struct{})
	for i := range contenders {
		wg.Go(func() {
			<-start
			errs[i] = s.c.Add(ctx, &cachedsql.Item{Key: k, Value: []byte(fmt.Sprint(i))})
		})
	}
	close(start)
	wg.Wait()
	winner := oneWinner(s, "Add", errs, cachedsql.ErrNotStored)
	s.mustGet(k, []byte(fmt.Sprint(winner)))
}

func testConcurrentCAS(s *suite) {
	k := s.key("k")
	s.set(k, []byte("start"), 0)
	it := s.mustGet(k, []byte("start"))
	ctx := s.Context()
	var wg sync.WaitGroup
	errs := make([]error, contenders)
	start := make(chan struct{})
	for i := range contenders {
		wg.Go(func() {
			<-start
			errs[i] = s.c.CompareAndSwap(ctx, &cachedsql.Item{Key: k, Value: []byte(fmt.Sprint(i)), CasID: it.CasID})
		})
	}
	close(start)
	wg.Wait()
	winner := oneWinner(s, "CompareAndSwap", errs, cachedsql.ErrCASConflict)
	s.mustGet(k, []byte(fmt.Sprint(winner)))
}

// oneWinner checks that exactly one of errs is nil and the others are lose.
func oneWinner(s *suite, op string, errs []error, lose error) int {
	s.Helper()
	winner, wins := -1, 0
	for i, err := range errs {
		switch {
		case err == nil:
			winner = i
			wins++
		case !errors.Is(err, lose):
			s.Fatalf("concurrent %s #%d: got error %v; want nil or %v", op, i, err, lose)
		}
	}
	if wins != 1 {
		s.Fatalf("concurrent %s: %d of %d succeeded; want exactly 1", op, wins, len(errs))
	}
	return winner
}

func testContextDone(s *suite) {
	k := s.key("k")
	s.set(k, []byte("v"), 0)
	it := s.mustGet(k, []byte("v"))
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	expired, cancel2 := context.WithDeadline(bg, time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		ctx  context.Context
		want error
	}{{cancelled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		_, err := s.c.GetMulti(c.ctx, []string{k})
		wantErr(s, "GetMulti with a done context", err, c.want)
		wantErr(s, "Set with a done context", s.c.Set(c.ctx, &cachedsql.Item{Key: k, Value: []byte("set")}), c.want)
		wantErr(s, "Add with a done context", s.c.Add(c.ctx, &cachedsql.Item{Key: s.key("add"), Value: []byte("add")}), c.want)
		wantErr(s, "CompareAndSwap with a done context",
			s.c.CompareAndSwap(c.ctx, &cachedsql.Item{Key: k, Value: []byte("cas"), CasID: it.CasID}), c.want)
		wantErr(s, "Delete with a done context", s.c.Delete(c.ctx, k), c.want)
	}
	// Nothing was done.
	if got := s.mustGet(k, []byte("v")); got.CasID != it.CasID {
		s.Fatalf("item rewritten by an operation whose context was done")
	}
	s.mustMiss(s.key("add"))
}

// testCancellableContext runs each operation with a live, cancellable
// context, which backends may serve on another path, and checks results
// and sentinel errors are the same.
func testCancellableContext(s *suite) {
	ctx, cancel := context.WithTimeout(bg, time.Minute)
	defer cancel()
	k, miss := s.key("k"), s.key("miss")
	wantOK(s, "Add", s.c.Add(ctx, &cachedsql.Item{Key: k, Value: []byte("a")}))
	wantErr(s, "Add again", s.c.Add(ctx, &cachedsql.Item{Key: k, Value: []byte("b")}), cachedsql.ErrNotStored)
	m, err := s.c.GetMulti(ctx, []string{k, miss})
	wantOK(s, "GetMulti", err)
	if len(m) != 1 || m[k] == nil || string(m[k].Value) != "a" || m[k].CasID == 0 {
		s.Fatalf("GetMulti = %v; want only %q = a", m, k)
	}
	id := m[k].CasID
	wantOK(s, "CompareAndSwap", s.c.CompareAndSwap(ctx, &cachedsql.Item{Key: k, Value: []byte("c"), CasID: id}))
	wantErr(s, "CompareAndSwap again", s.c.CompareAndSwap(ctx, &cachedsql.Item{Key: k, Value: []byte("d"), CasID: id}), cachedsql.ErrCASConflict)
	wantErr(s, "CompareAndSwap on a missing key", s.c.CompareAndSwap(ctx, &cachedsql.Item{Key: miss, Value: []byte("d"), CasID: id}), cachedsql.ErrCacheMiss)
	wantOK(s, "Set", s.c.Set(ctx, &cachedsql.Item{Key: k, Value: []byte("e")}))
	s.mustGet(k, []byte("e"))
	wantOK(s, "Delete", s.c.Delete(ctx, k))
	wantErr(s, "Delete again", s.c.Delete(ctx, k), cachedsql.ErrCacheMiss)
	wantErr(s, "Set with a bad key", s.c.Set(ctx, &cachedsql.Item{Key: "a b", Value: []byte("x")}), cachedsql.ErrBadKey)
	wantErr(s, "Set with a bad TTL", s.c.Set(ctx, &cachedsql.Item{Key: k, Value: []byte("x"), TTL: -1}), cachedsql.ErrBadTTL)
}

func testTTLExpiry(s *suite) {
	const ttl = 2 * time.Second
	live, sub, casKey, addKey, forever := s.key("live"), s.key("sub-second"), s.key("cas"), s.key("add"), s.key("forever")
	stored := time.Now()
	s.set(live, []byte("x"), ttl)
	// A sub-second TTL rounds up to a second; rounded down it would be 0,
	// which means "never expires".
	s.set(sub, []byte("x"), time.Millisecond)
	s.set(casKey, []byte("x"), ttl)
	wantOK(s, "Add with a TTL", s.c.Add(bg, &cachedsql.Item{Key: addKey, Value: []byte("x"), TTL: ttl}))
	s.set(forever, []byte("x"), 0)
	casItem := s.mustGet(casKey, []byte("x"))

	// With one-second resolution a 2 s item lives at least 1 s; on a
	// machine so loaded that this point comes later, there is nothing to
	// check.
	time.Sleep(500*time.Millisecond - time.Since(stored))
	it := s.get(live)
	if elapsed := time.Since(stored); elapsed < time.Second && it == nil {
		s.Fatalf("item with TTL %v gone %v after it was stored", ttl, elapsed)
	}

	time.Sleep(ttlWait(ttl) - time.Since(stored))
	s.mustMiss(live)
	s.mustMiss(sub)
	wantErr(s, "CompareAndSwap on an expired item",
		s.c.CompareAndSwap(bg, &cachedsql.Item{Key: casKey, Value: []byte("y"), CasID: casItem.CasID}), cachedsql.ErrCacheMiss)
	wantOK(s, "Add over an expired item", s.c.Add(bg, &cachedsql.Item{Key: addKey, Value: []byte("new")}))
	s.mustGet(addKey, []byte("new"))
	wantErr(s, "Delete of an expired item", s.c.Delete(bg, live), cachedsql.ErrCacheMiss)
	s.mustGet(forever, []byte("x"))
}
