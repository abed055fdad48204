package broker

import "sync"

// itemQueue is a shard's FIFO of queued events: a ring that grows on demand
// (doubling) up to limit items, so an idle shard holds no slots at all and
// a busy one only what its bursts need. The flusher is its only reader.
type itemQueue struct {
	mu    sync.Mutex
	buf   []*item
	head  int // index of the oldest item
	n     int // items queued
	limit int
	// ready has a token when items were pushed since the reader last
	// looked: the reader waits on it when the queue is empty.
	ready chan struct{}
	// space, when not nil, is closed when an item is taken from a full
	// queue (writers blocked by the limit wait on it).
	space chan struct{}
}

// queueInitial is the ring's first size; queueKeep the largest ring kept
// once the queue runs empty (a larger one is given back).
const (
	queueInitial = 8
	queueKeep    = 256
)

func newItemQueue(limit int) *itemQueue {
	return &itemQueue{limit: limit, ready: make(chan struct{}, 1)}
}

// push queues it. When the queue is full it queues nothing and returns a
// channel closed once an item was taken.
func (q *itemQueue) push(it *item) (bool, <-chan struct{}) {
	q.mu.Lock()
	if q.n >= q.limit {
		if q.space == nil {
			q.space = make(chan struct{})
		}
		ch := q.space
		q.mu.Unlock()
		return false, ch
	}
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = it
	q.n++
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true, nil
}

// grow doubles the ring (at most to limit), keeping the order.
func (q *itemQueue) grow() {
	size := min(max(2*len(q.buf), queueInitial), q.limit)
	buf := make([]*item, size)
	k := copy(buf, q.buf[q.head:])
	copy(buf[k:], q.buf[:q.head])
	q.buf, q.head = buf, 0
}

// pop takes the oldest item, nil when the queue is empty.
func (q *itemQueue) pop() *item {
	q.mu.Lock()
	if q.n == 0 {
		q.mu.Unlock()
		return nil
	}
	it := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	full := q.n == q.limit
	q.n--
	if q.n == 0 {
		q.head = 0
		if len(q.buf) > queueKeep {
			q.buf = nil
		}
	}
	if full && q.space != nil {
		close(q.space)
		q.space = nil
	}
	q.mu.Unlock()
	return it
}

// len is the number of items queued.
func (q *itemQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// slots is the ring's current size (memory held, in items).
func (q *itemQueue) slots() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.buf)
}
