package gateway

import (
	"runtime"
	"sync"
)

// freeList keeps up to max released objects for reuse. Unlike sync.Pool,
// what it keeps is bounded and what it does not keep is garbage at once: a
// start-up burst of 1,000 shards leaves a few buffers behind, not one per
// shard until the next two collections.
type freeList[T any] struct {
	mu    sync.Mutex
	items []T
	max   int
}

// newFreeList returns a free list of max objects; 0 = four per CPU.
func newFreeList[T any](max int) *freeList[T] {
	if max <= 0 {
		max = 4 * runtime.GOMAXPROCS(0)
	}
	return &freeList[T]{max: max}
}

func (l *freeList[T]) get() (T, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var zero T
	n := len(l.items)
	if n == 0 {
		return zero, false
	}
	it := l.items[n-1]
	l.items[n-1] = zero
	l.items = l.items[:n-1]
	return it, true
}

// put keeps it if there is room; false when it was dropped.
func (l *freeList[T]) put(it T) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.items) >= l.max {
		return false
	}
	l.items = append(l.items, it)
	return true
}
