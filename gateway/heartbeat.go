package gateway

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// beater sends one connection's heartbeats and queued member requests and
// ends the connection when it is a zombie. It has no goroutine of its own:
// its work runs in runtime timer callbacks (time.AfterFunc), so an idle
// shard costs one goroutine (its reader), not two; 1,000 shards do not keep
// 1,000 heartbeat goroutines' stacks. Callbacks are serialised by mu; stop
// waits for a running one.
type beater struct {
	s   *shard
	c   *conn
	ctx context.Context // the connection's; cancelled before stop

	mu      sync.Mutex
	stopped bool
	running sync.WaitGroup // callbacks in progress
	iv      time.Duration  // heartbeat interval; 0 until HELLO
	beat    *time.Timer    // next heartbeat (AfterFunc); nil until HELLO
	members *time.Timer    // next member request (AfterFunc); nil until HELLO
	buf     []byte
	// stopUnblock undoes the context.AfterFunc that unblocks the reader
	// when ctx ends.
	stopUnblock func() bool
}

// startBeater prepares the beater of c, whose context is connCtx; it
// starts beating at HELLO (hello). When the shard's ctx ends it unblocks
// the reader.
func (s *shard) startBeater(ctx, connCtx context.Context, c *conn) *beater {
	b := &beater{s: s, c: c, ctx: connCtx}
	b.stopUnblock = context.AfterFunc(ctx, c.unblock)
	return b
}

// enter starts a callback; false once stopped.
func (b *beater) enter() bool {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return false
	}
	b.running.Add(1)
	return true
}

func (b *beater) leave() {
	b.mu.Unlock()
	b.running.Done()
}

// stop ends the beater and waits for a callback in progress. The
// connection's ctx must be cancelled first (a callback may be waiting for
// the send limit).
func (b *beater) stop() {
	b.mu.Lock()
	b.stopped = true
	if b.beat != nil {
		b.beat.Stop()
	}
	if b.members != nil {
		b.members.Stop()
	}
	b.mu.Unlock()
	b.stopUnblock()
	b.running.Wait()
}

// hello starts heartbeating every iv, the first beat after a random part of
// iv (Discord's jitter), and the member requests. It takes a reconnect
// asked for before HELLO. Called by the reader.
func (b *beater) hello(iv time.Duration) {
	b.mu.Lock()
	if b.stopped || b.beat != nil {
		b.mu.Unlock()
		return
	}
	b.iv = iv
	b.beat = time.AfterFunc(time.Duration(rand.Float64()*float64(iv)), b.onBeat)
	// Check the member queue soon: requests may be left from the last
	// connection.
	b.members = time.AfterFunc(100*time.Millisecond, b.onMembers)
	b.mu.Unlock()
	b.s.liveConn(b)
}

// onBeat sends the periodic heartbeat; the connection is a zombie when the
// last one got no ACK.
func (b *beater) onBeat() {
	if !b.enter() {
		return
	}
	defer b.leave()
	if b.send(true) {
		b.beat.Reset(b.iv)
	}
}

// beatNow answers the gateway's op 1 with a heartbeat. Called by the
// reader.
func (b *beater) beatNow() {
	if !b.enter() {
		return
	}
	defer b.leave()
	b.send(false)
}

// onMembers sends the member requests that are due.
func (b *beater) onMembers() {
	if !b.enter() {
		return
	}
	defer b.leave()
	b.s.sendMembers(b.c, b.members, &b.buf)
}

// kickMembers runs onMembers now (a request was queued).
func (b *beater) kickMembers() {
	b.mu.Lock()
	if !b.stopped && b.members != nil {
		b.members.Reset(0)
	}
	b.mu.Unlock()
}

// send sends one heartbeat (b.mu held). With check, a heartbeat whose
// predecessor got no ACK ends the connection as a zombie, unless the reader
// was blocked (in the Sink or a limiter) long enough that the ACK may be
// unread. A failure ends the connection; send reports false then.
func (b *beater) send(check bool) bool {
	c := b.c
	if check && !c.acked.Load() {
		busyFor := c.busyNanos.Swap(0)
		if since := c.busySince.Load(); since != 0 {
			busyFor += time.Now().UnixNano() - since
		}
		if time.Duration(busyFor) < b.iv/4 {
			c.end(errZombie)
			return false
		}
		// The reader was blocked in the Sink: the ACK may be unread.
	} else if check {
		c.busyNanos.Store(0)
	}
	if err := c.limit.wait(b.ctx, true); err != nil {
		return false
	}
	b.buf = appendHeartbeat(b.buf[:0], b.s.seq.Load())
	c.acked.Store(false)
	c.markBeat()
	if err := c.w.write(ws.OpText, b.buf); err != nil {
		c.end(fmt.Errorf("send heartbeat: %w", err))
		return false
	}
	return true
}

// liveConn makes b the beater Reconnect and member requests reach, and
// takes a reconnect that was asked for while no connection was live.
func (s *shard) liveConn(b *beater) {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	s.live = b
	if b != nil && s.reconnectAsked {
		s.reconnectAsked = false
		b.c.end(errAskedReconnect)
	}
}

// askReconnect ends the live connection so that the shard resumes on a new
// one; a shard between connections takes the request on its next one (at
// its HELLO).
func (s *shard) askReconnect() {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	if s.live != nil {
		s.live.c.end(errAskedReconnect)
		return
	}
	s.reconnectAsked = true
}

// kickMembers has the live connection send queued member requests now.
func (s *shard) kickMembers() {
	s.liveMu.Lock()
	b := s.live
	s.liveMu.Unlock()
	if b != nil {
		b.kickMembers()
	}
}

// sendMembers sends the due member requests the send limit allows and arms
// t for the next one.
func (s *shard) sendMembers(c *conn, t *time.Timer, buf *[]byte) {
	if !c.ready.Load() {
		t.Reset(100 * time.Millisecond)
		return
	}
	for {
		g, wait := s.members.pop()
		if g == 0 {
			if wait > 0 {
				t.Reset(wait)
			}
			return
		}
		if d := c.limit.try(false); d > 0 {
			s.members.add(g, time.Time{})
			t.Reset(d)
			return
		}
		*buf = appendRequestMembers((*buf)[:0], g)
		if err := c.w.write(ws.OpText, *buf); err != nil {
			s.members.add(g, time.Time{})
			return
		}
	}
}

// memberQueue holds guilds waiting for a Request Guild Members. It outlives
// connections.
type memberQueue struct {
	mu    sync.Mutex
	items []memberReq
	// wake is called after a push (the live connection sends it).
	wake func()
}

type memberReq struct {
	guild     uint64
	notBefore time.Time
}

// push queues guild g (once: a guild already queued keeps its place, with
// the later notBefore) and wakes the sender.
func (q *memberQueue) push(g uint64, notBefore time.Time) {
	q.add(g, notBefore)
	if q.wake != nil {
		q.wake()
	}
}

// add queues guild g without waking the sender (the sender itself puts
// back what it could not send).
func (q *memberQueue) add(g uint64, notBefore time.Time) {
	q.mu.Lock()
	queued := false
	for i := range q.items {
		if q.items[i].guild == g {
			if notBefore.After(q.items[i].notBefore) {
				q.items[i].notBefore = notBefore
			}
			queued = true
			break
		}
	}
	if !queued {
		q.items = append(q.items, memberReq{g, notBefore})
	}
	q.mu.Unlock()
}

// pop returns a due guild, or 0 and how long until the next one is due (0
// when the queue is empty).
func (q *memberQueue) pop() (uint64, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	var next time.Duration
	for i, it := range q.items {
		if !it.notBefore.After(now) {
			q.items = append(q.items[:i], q.items[i+1:]...)
			return it.guild, 0
		}
		if d := it.notBefore.Sub(now); next == 0 || d < next {
			next = d
		}
	}
	return 0, next
}
