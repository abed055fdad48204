package redistest_test

import (
	"testing"

	"github.com/feathery/feathery/broker/redistest"
)

func TestStartCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	cl := c.Client(t)
	ctx := t.Context()
	// Keys in different slots, written and read through the cluster client.
	for _, k := range []string{"a", "b", "c", "{x}1", "{y}2", "{z}3"} {
		if err := cl.Do(ctx, cl.B().Set().Key(k).Value(k).Build()).Error(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	nodesWithKeys := 0
	for _, n := range c.Nodes {
		nc := n.Client(t)
		size, err := nc.Do(ctx, nc.B().Dbsize().Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if size > 0 {
			nodesWithKeys++
		}
	}
	if nodesWithKeys < 2 {
		t.Fatalf("keys landed on %d nodes, want them spread over at least 2", nodesWithKeys)
	}
}
