package broker

import (
	"context"
	"testing"

	"github.com/feathery/feathery/broker/redistest"
)

// TestCacheCluster runs the cache suites on three masters: every script
// call touches one slot, or Redis (and rueidis) would refuse it.
func TestCacheCluster(t *testing.T) {
	client := redistest.StartCluster(t, 3).Client(t)
	t.Run("RoundTrip", func(t *testing.T) { testCacheRoundTrip(t, client) })
	t.Run("TwoBots", func(t *testing.T) { testCacheTwoBots(t, client) })
	t.Run("Idempotence", func(t *testing.T) { testCacheIdempotence(t, client, 8) })
	// the keys really are spread over the nodes
	spread := 0
	for _, node := range client.Nodes() {
		n, err := node.Do(context.Background(), node.B().Dbsize().Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			spread++
		}
	}
	if spread < 2 {
		t.Errorf("cache keys on %d node(s), want them spread", spread)
	}
}
