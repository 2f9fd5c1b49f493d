package cachedsql

import (
	"strconv"
	"testing"
)

func TestLRUEvictsLeastRecentlyUsed(t *testing.T) {
	l := newLRU[int](3)
	l.put("a", 1)
	l.put("b", 2)
	l.put("c", 3)
	if _, ok := l.get("a"); !ok { // a is now the most recent; b the least
		t.Fatal("a missing before eviction")
	}
	l.put("d", 4)
	if _, ok := l.get("b"); ok {
		t.Errorf("b survived; want it evicted as least recently used")
	}
	for k, want := range map[string]int{"a": 1, "c": 3, "d": 4} {
		if got, ok := l.get(k); !ok || got != want {
			t.Errorf("get(%q) = %d, %v; want %d, true", k, got, ok, want)
		}
	}
	if got := l.len(); got != 3 {
		t.Errorf("len = %d; want 3", got)
	}
}

func TestLRUStaysBounded(t *testing.T) {
	l := newLRU[int](100)
	for i := range 10_000 {
		l.put("SELECT * FROM t WHERE id = "+strconv.Itoa(i), i)
	}
	if got := l.len(); got != 100 {
		t.Errorf("len = %d; want 100", got)
	}
	l.put("SELECT * FROM t WHERE id = 9999", -1) // replacing keeps the size
	if got, _ := l.get("SELECT * FROM t WHERE id = 9999"); got != -1 || l.len() != 100 {
		t.Errorf("replace: got %d, len %d; want -1, 100", got, l.len())
	}
}

func TestLRUHitAllocatesNothing(t *testing.T) {
	l := newLRU[int](10)
	l.put("q", 1)
	if n := testing.AllocsPerRun(100, func() { l.get("q") }); n != 0 {
		t.Errorf("get allocates %v times; want 0", n)
	}
}
