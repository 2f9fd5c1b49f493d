package cachedsql

import "sync"

// lru is a bounded map from query text to its plan. Queries with inlined
// literals would otherwise grow it without bound; a hit allocates nothing.
type lru[V any] struct {
	max int

	mu   sync.Mutex // protects m and the list threaded through its nodes
	m    map[string]*lruNode[V]
	head lruNode[V] // sentinel: head.next is the most recently used
}

type lruNode[V any] struct {
	key        string
	value      V
	prev, next *lruNode[V]
}

func newLRU[V any](max int) *lru[V] {
	l := &lru[V]{max: max, m: make(map[string]*lruNode[V], min(max, 1024))}
	l.head.prev, l.head.next = &l.head, &l.head
	return l
}

func (l *lru[V]) get(key string) (V, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.m[key]
	if !ok {
		var zero V
		return zero, false
	}
	l.unlink(n)
	l.pushFront(n)
	return n.value, true
}

func (l *lru[V]) put(key string, value V) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n, ok := l.m[key]; ok {
		n.value = value
		l.unlink(n)
		l.pushFront(n)
		return
	}
	if len(l.m) >= l.max {
		oldest := l.head.prev
		l.unlink(oldest)
		delete(l.m, oldest.key)
	}
	n := &lruNode[V]{key: key, value: value}
	l.m[key] = n
	l.pushFront(n)
}

func (l *lru[V]) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

func (l *lru[V]) unlink(n *lruNode[V]) {
	n.prev.next, n.next.prev = n.next, n.prev
}

func (l *lru[V]) pushFront(n *lruNode[V]) {
	n.prev, n.next = &l.head, l.head.next
	l.head.next.prev = n
	l.head.next = n
}
