package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/redistest"
)

var errInjected = errors.New("injected failure")

// failingClient fails one DoMulti call (numbered from 1) without sending
// it, as a connection lost before the request would.
type failingClient struct {
	rueidis.Client
	calls  atomic.Int32
	failAt atomic.Int32
}

func (f *failingClient) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	if n := f.calls.Add(1); n == f.failAt.Load() {
		out := make([]rueidis.RedisResult, len(cmds))
		for i := range out {
			out[i] = rueidis.NewErrorResult(errInjected)
		}
		return out
	}
	return f.Client.DoMulti(ctx, cmds...)
}

// failNth makes the n-th DoMulti call from now fail.
func (f *failingClient) failNth(n int32) {
	f.failAt.Store(f.calls.Load() + n)
}

// TestCachePartialFailure: a batch whose member removals (GUILD_CREATE
// without some members, GUILD_DELETE) fail after the guild's script
// committed and before the users' mutual guilds were updated (or
// before the record of that was cleared) ends, once retried, in the cache a
// batch that never failed leaves — on a single Redis and on Redis Cluster.
func TestCachePartialFailure(t *testing.T) {
	t.Run("Redis", func(t *testing.T) { testCachePartialFailure(t, realRedis(t).client) })
	t.Run("Cluster", func(t *testing.T) { testCachePartialFailure(t, redistest.StartCluster(t, 3).Client(t)) })
}

func testCachePartialFailure(t *testing.T, client rueidis.Client) {
	full := ev("a", "GUILD_CREATE", wGuildCreate(0, 0, []int{0, 1, 2, 3}, false))
	fewer := ev("a", "GUILD_CREATE", wGuildCreate(0, 1, []int{0, 3}, false))
	other := ev("a", "GUILD_CREATE", wGuildCreate(1, 0, []int{2}, false)) // user 2 stays in guild 1
	update := ev("a", "GUILD_UPDATE", mustJSON(obj{"id": wid(wGuildBase, 0), "name": "renamed"}))
	rejoined := ev("a", "GUILD_CREATE", wGuildCreate(0, 2, []int{0, 1, 3}, false))
	del := ev("a", "GUILD_DELETE", mustJSON(obj{"id": wid(wGuildBase, 0)}))
	cases := []struct {
		name string
		// setup, then the failing batch (its DoMulti call failAt fails),
		// then what is applied after it
		setup, batch, after []*Event
		failAt              int32
		// membership: compare only who is in which guild (the failed
		// batch is not retried, so its user objects are not written)
		membership bool
	}{
		{"create/users", []*Event{full, other}, []*Event{fewer}, []*Event{fewer}, 2, false},
		{"create/record", []*Event{full, other}, []*Event{fewer}, []*Event{fewer}, 3, false},
		{"create/then-update", []*Event{full, other}, []*Event{fewer}, []*Event{update}, 2, true},
		{"create/then-rejoin", []*Event{full, other}, []*Event{fewer}, []*Event{rejoined}, 2, false},
		{"delete/users", []*Event{full, other}, []*Event{del}, []*Event{del}, 2, false},
		{"delete/record", []*Event{full, other}, []*Event{del}, []*Event{del}, 3, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := newTestCache(t, client, CacheConfig{Namespace: fmt.Sprintf("ref%d", i)})
			for _, e := range slices.Concat(tc.setup, tc.batch, tc.after) {
				apply(t, ref, e)
			}
			fc := &failingClient{Client: client}
			ns := fmt.Sprintf("got%d", i)
			c := newTestCache(t, fc, CacheConfig{Namespace: ns})
			for _, e := range tc.setup {
				apply(t, c, e)
			}
			fc.failNth(tc.failAt)
			before := make([][]byte, len(tc.batch))
			if err := c.Apply(context.Background(), tc.batch, before); !errors.Is(err, errInjected) {
				t.Fatalf("Apply with call %d failing: %v, want the injected error", tc.failAt, err)
			}
			if tc.failAt == 2 {
				// the guild's script committed; users 1 and 2 still list the guild
				if ids := userGuilds(t, client, c.def.keys, wid(wUserBase, 1)); !slices.Contains(ids, wid(wGuildBase, 0)) {
					t.Fatalf("the failure was not between the phases: user 1's guilds %v", ids)
				}
			}
			for _, e := range tc.after {
				apply(t, c, e)
			}
			want, got := dumpCache(t, client, fmt.Sprintf("ref%d", i)), dumpCache(t, client, ns)
			if tc.membership {
				for _, m := range []map[string]string{want, got} {
					for k := range m {
						if strings.HasSuffix(k, ":user") {
							m[k] = "a user"
						} else if !strings.HasSuffix(k, ":guilds") && !strings.HasSuffix(k, ":members") && !strings.HasSuffix(k, ":pending_leaves") {
							delete(m, k)
						}
					}
				}
			}
			if !maps.Equal(got, want) {
				for k := range maps.Keys(want) {
					if got[k] != want[k] {
						t.Errorf("%s: got %q, want %q", k, got[k], want[k])
					}
				}
				for k := range maps.Keys(got) {
					if _, ok := want[k]; !ok {
						t.Errorf("%s: got %q, want no key", k, got[k])
					}
				}
			}
		})
	}
}
