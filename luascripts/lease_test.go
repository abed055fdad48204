package luascripts_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/luascripts"
)

// TestLease: acquire, hold, renew, release and expiry of one lease, with a
// fencing number that grows with every new owner; judged on real Redis
// (the scripts read the server clock).
func TestLease(t *testing.T) {
	c := redistest.Start(t, redistest.Options{}).Client(t)
	ctx := context.Background()
	key := "p:{bot:x}:lease:0"

	r, err := luascripts.LeaseAcquire(ctx, c, key, "a", time.Minute)
	if err != nil || !r.Taken || r.Fence != 1 || r.Node != "a" {
		t.Fatalf("first acquire: %+v %v", r, err)
	}
	r, err = luascripts.LeaseAcquire(ctx, c, key, "b", time.Minute)
	if err != nil || r.Taken || r.Fence != 1 || r.Node != "a" || r.Left <= 50*time.Second || r.Left > time.Minute {
		t.Fatalf("acquire of a held lease: %+v %v, want held by a with fence 1 and about a minute left", r, err)
	}
	// The owner cannot take its own lease twice either.
	if r, _ := luascripts.LeaseAcquire(ctx, c, key, "a", time.Minute); r.Taken {
		t.Fatalf("second acquire by the owner: %+v", r)
	}
	if ok, err := luascripts.LeaseRelease(ctx, c, key, 7); err != nil || ok {
		t.Fatalf("release with a wrong fence: %v %v, want false", ok, err)
	}
	if ok, err := luascripts.LeaseRelease(ctx, c, key, 1); err != nil || !ok {
		t.Fatalf("release: %v %v", ok, err)
	}
	r, err = luascripts.LeaseAcquire(ctx, c, key, "b", time.Minute)
	if err != nil || !r.Taken || r.Fence != 2 || r.Node != "b" {
		t.Fatalf("acquire after release: %+v %v, want b with fence 2", r, err)
	}
	if got, err := luascripts.LeaseRenew(ctx, c, []string{key}, []int64{1}, "a", time.Minute); err != nil || got[0] {
		t.Fatalf("renew by the former owner: %v %v, want lost", got, err)
	}

	// Expiry: a short lease held by b is free once its time is up; the
	// next owner gets fence 3 and b's renew fails.
	if _, err := luascripts.LeaseRenew(ctx, c, []string{key}, []int64{2}, "b", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err = luascripts.LeaseAcquire(ctx, c, key, "c", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if r.Taken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the expired lease was never free: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.Fence != 3 {
		t.Fatalf("fence after expiry %d, want 3", r.Fence)
	}
	if got, _ := luascripts.LeaseRenew(ctx, c, []string{key}, []int64{2}, "b", time.Minute); got[0] {
		t.Fatal("renew after another node took the expired lease succeeded")
	}

	// A lease past its expiry that nobody took is still its owner's:
	// renewing it works and keeps the fence.
	if _, err := luascripts.LeaseRenew(ctx, c, []string{key}, []int64{3}, "c", 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for {
		now, ls, err := luascripts.LeaseState(ctx, c, []string{key})
		if err != nil {
			t.Fatal(err)
		}
		if ls[0].Expires <= now {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := luascripts.LeaseRenew(ctx, c, []string{key}, []int64{3}, "c", time.Minute); err != nil || !got[0] {
		t.Fatalf("renew of an expired lease nobody took: %v %v", got, err)
	}
	now, ls, err := luascripts.LeaseState(ctx, c, []string{key, "p:{bot:x}:lease:1"})
	if err != nil {
		t.Fatal(err)
	}
	if ls[0].Node != "c" || ls[0].Fence != 3 || ls[0].Expires-now < 50_000 || ls[1] != (luascripts.LeaseInfo{}) {
		t.Fatalf("state %+v at %d", ls, now)
	}

	// Renew several leases in one call: only those still held are renewed.
	k1, k2 := "p:{bot:x}:lease:1", "p:{bot:x}:lease:2"
	r1, _ := luascripts.LeaseAcquire(ctx, c, k1, "c", time.Minute)
	r2, _ := luascripts.LeaseAcquire(ctx, c, k2, "c", time.Minute)
	if ok, _ := luascripts.LeaseRelease(ctx, c, k2, r2.Fence); !ok {
		t.Fatal("release lease 2")
	}
	if _, err := luascripts.LeaseAcquire(ctx, c, k2, "d", time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := luascripts.LeaseRenew(ctx, c, []string{key, k1, k2}, []int64{3, r1.Fence, r2.Fence}, "c", time.Minute)
	if err != nil || !got[0] || !got[1] || got[2] {
		t.Fatalf("renew of three: %v %v, want [true true false]", got, err)
	}
}

// TestLeaseBadData: a lease hash holding something feathery did not write
// is an error naming it, never a lease.
func TestLeaseBadData(t *testing.T) {
	c := redistest.Start(t, redistest.Options{}).Client(t)
	ctx := context.Background()
	key := "p:{bot:x}:lease:0"
	c.Do(ctx, c.B().Hset().Key(key).FieldValue().FieldValue("fence", "many").Build())
	if r, err := luascripts.LeaseAcquire(ctx, c, key, "a", time.Minute); err == nil {
		t.Fatalf("acquire over a non-integer fence: %+v, want an error", r)
	}
	if _, _, err := luascripts.LeaseState(ctx, c, []string{key}); err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("state of a non-integer fence: %v, want an error naming %s", err, key)
	}
	c.Do(ctx, c.B().Set().Key("p:{bot:x}:lease:1").Value("x").Build())
	if _, err := luascripts.LeaseAcquire(ctx, c, "p:{bot:x}:lease:1", "a", time.Minute); err == nil {
		t.Fatal("acquire over a string key: no error")
	}
}

// TestPublishFenced: with a fence the publish script writes only while the
// lease carries that fence; a refused batch writes nothing (no entry, no
// checkpoint) and says who holds the lease. Without a fence nothing is
// checked, lease or not.
func TestPublishFenced(t *testing.T) {
	c := redistest.Start(t, redistest.Options{}).Client(t)
	ctx := context.Background()
	ck, stream, lease := "p:{bot:f}:session:0", "p:{bot:f}:events", "p:{bot:f}:lease:0"
	call := luascripts.PublishCall{
		Checkpoint: ck, Streams: []luascripts.PublishStream{{Key: stream}},
		Session: "s", Seq: 1, ShardCount: 1, Bot: "f", Shard: 0,
		Entries: []luascripts.PublishEntry{{Seq: 1, Type: "A", Data: []byte(`1`), At: 10}},
		Lease:   lease, Fence: 1,
	}
	var a luascripts.PublishArgs
	a.Build(&call)
	r, _ := luascripts.LeaseAcquire(ctx, c, lease, "a", time.Minute)
	if res, err := luascripts.Publish(ctx, c, &a); err != nil || res.Added != 1 {
		t.Fatalf("publish with the lease's fence: %+v %v", res, err)
	}
	var fe *luascripts.FencedError
	// b takes the shard: a's next batch is refused, b's goes.
	if ok, _ := luascripts.LeaseRelease(ctx, c, lease, r.Fence); !ok {
		t.Fatal("release")
	}
	if r, _ := luascripts.LeaseAcquire(ctx, c, lease, "b", time.Minute); r.Fence != 2 {
		t.Fatalf("b's fence %d, want 2", r.Fence)
	}
	call.Seq, call.Entries = 2, []luascripts.PublishEntry{{Seq: 2, Type: "B", Data: []byte(`2`), At: 11}}
	a.Build(&call)
	_, err := luascripts.Publish(ctx, c, &a)
	if !errors.As(err, &fe) || !errors.Is(err, luascripts.ErrFenced) || fe.Fence != "2" || fe.Node != "b" {
		t.Fatalf("publish with the old fence: %v, want refused naming fence 2 of b", err)
	}
	if n, _ := c.Do(ctx, c.B().Xlen().Key(stream).Build()).AsInt64(); n != 1 {
		t.Fatalf("%d entries after a refused batch, want 1", n)
	}
	_ = r
	if s, _ := c.Do(ctx, c.B().Hget().Key(ck).Field("seq").Build()).ToString(); s != "1" {
		t.Fatalf("checkpoint seq %s after a refused batch, want 1", s)
	}
	call.Fence = 2
	a.Build(&call)
	if res, err := luascripts.Publish(ctx, c, &a); err != nil || res.Added != 1 {
		t.Fatalf("publish with the new fence: %+v %v", res, err)
	}
	// Redis lost its data (the lease hash is gone): nobody else holds the
	// shard, the owner's batch goes and its renewal writes the lease again
	// with its fence, which a stale fence cannot pass.
	c.Do(ctx, c.B().Del().Key(lease).Build())
	call.Seq, call.Entries = 3, []luascripts.PublishEntry{{Seq: 3, Type: "C", Data: []byte(`3`), At: 12}}
	a.Build(&call)
	if res, err := luascripts.Publish(ctx, c, &a); err != nil || res.Added != 1 {
		t.Fatalf("publish after the lease was wiped: %+v %v", res, err)
	}
	if ok, err := luascripts.LeaseRenew(ctx, c, []string{lease}, []int64{2}, "b", time.Minute); err != nil || !ok[0] {
		t.Fatalf("renew of a wiped lease: %v %v", ok, err)
	}
	if r, _ := luascripts.LeaseAcquire(ctx, c, lease, "c", time.Minute); r.Taken || r.Fence != 2 || r.Node != "b" {
		t.Fatalf("acquire after the renewal rewrote the wiped lease: %+v, want held by b with fence 2", r)
	}
	call.Fence, call.Seq = 1, 4
	call.Entries = []luascripts.PublishEntry{{Seq: 4, Type: "D", Data: []byte(`4`), At: 13}}
	a.Build(&call)
	if _, err := luascripts.Publish(ctx, c, &a); !errors.Is(err, luascripts.ErrFenced) {
		t.Fatalf("stale fence after the lease was rewritten: %v, want fenced", err)
	}
	call.Fence = 2
	// Fence 0: no fleet, no check (and no lease key sent).
	call.Fence, call.Seq = 0, 5
	call.Entries = []luascripts.PublishEntry{{Seq: 5, Type: "E", Data: []byte(`5`), At: 14}}
	a.Build(&call)
	if len(a.Keys) != 2 {
		t.Fatalf("unfenced call sends %d keys, want 2 (checkpoint, stream)", len(a.Keys))
	}
	if res, err := luascripts.Publish(ctx, c, &a); err != nil || res.Added != 1 {
		t.Fatalf("unfenced publish: %+v %v", res, err)
	}
}

// TestFleetHeartbeat: members are listed in id order with their details
// and leave when their heartbeat is older than the TTL or they leave.
func TestFleetHeartbeat(t *testing.T) {
	c := redistest.Start(t, redistest.Options{}).Client(t)
	ctx := context.Background()
	mk, dk := "p:{bot:x}:nodes", "p:{bot:x}:nodes:details"
	beat := func(node string, ttl time.Duration) []luascripts.FleetMember {
		t.Helper()
		_, ms, err := luascripts.FleetHeartbeat(ctx, c, mk, dk, node, ttl, `{"id":"`+node+`"}`)
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	ids := func(ms []luascripts.FleetMember) string {
		var s []string
		for _, m := range ms {
			s = append(s, m.ID)
		}
		return strings.Join(s, ",")
	}
	beat("b", time.Minute)
	ms := beat("a", time.Minute)
	if ids(ms) != "a,b" || ms[1].Details != `{"id":"b"}` {
		t.Fatalf("members %+v", ms)
	}
	beat("c", 200*time.Millisecond)
	deadline := time.Now().Add(30 * time.Second)
	for ids(beat("a", time.Minute)) != "a,b" {
		if time.Now().After(deadline) {
			t.Fatal("c's membership never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, _ := c.Do(ctx, c.B().Hlen().Key(dk).Build()).AsInt64(); n != 2 {
		t.Fatalf("%d detail fields after c expired, want 2", n)
	}
	if ok, err := luascripts.FleetLeave(ctx, c, mk, dk, "b"); err != nil || !ok {
		t.Fatalf("leave: %v %v", ok, err)
	}
	if got := ids(beat("a", time.Minute)); got != "a" {
		t.Fatalf("members after b left: %s", got)
	}
}
