package redistest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Cluster is a Redis Cluster of masters only, started by StartCluster.
type Cluster struct {
	Nodes []*Server
}

// Addrs are the nodes' addresses, usable as cluster seed addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Client returns a rueidis cluster client closed at the end of the test.
func (c *Cluster) Client(tb testing.TB) rueidis.Client {
	tb.Helper()
	cl, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: c.Addrs(), DisableCache: true})
	if err != nil {
		tb.Fatalf("connect to redis cluster %v: %v", c.Addrs(), err)
	}
	tb.Cleanup(cl.Close)
	return cl
}

// StartCluster starts masters redis-server processes with cluster mode on,
// splits the 16384 slots evenly among them (CLUSTER ADDSLOTSRANGE), joins
// them (CLUSTER MEET) and waits until every node reports cluster_state:ok
// and knows every slot's owner. The nodes stop when the test ends.
func StartCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	if masters < 1 {
		tb.Fatalf("start cluster: %d masters", masters)
	}
	c := &Cluster{}
	busPorts := make([]int, masters)
	for i := range masters {
		busPorts[i] = FreePort(tb)
		c.Nodes = append(c.Nodes, Start(tb, Options{Args: []string{
			"--cluster-enabled", "yes",
			"--cluster-port", strconv.Itoa(busPorts[i]),
			"--cluster-node-timeout", "5000",
			"--cluster-require-full-coverage", "yes",
		}}))
	}
	ctx := context.Background()
	clients := make([]rueidis.Client, masters)
	for i, n := range c.Nodes {
		clients[i] = n.Client(tb)
	}
	const slots = 16384
	for i, cl := range clients {
		lo := i * slots / masters
		hi := (i+1)*slots/masters - 1
		if err := cl.Do(ctx, cl.B().Arbitrary("CLUSTER", "ADDSLOTSRANGE").
			Args(strconv.Itoa(lo), strconv.Itoa(hi)).Build()).Error(); err != nil {
			tb.Fatalf("cluster addslotsrange %d-%d on %s: %v", lo, hi, c.Nodes[i].Addr, err)
		}
	}
	host, port0 := splitAddr(tb, c.Nodes[0].Addr)
	for i := 1; i < masters; i++ {
		if err := clients[i].Do(ctx, clients[i].B().Arbitrary("CLUSTER", "MEET").
			Args(host, port0, strconv.Itoa(busPorts[0])).Build()).Error(); err != nil {
			tb.Fatalf("cluster meet from %s: %v", c.Nodes[i].Addr, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, cl := range clients {
		for {
			ok, why := nodeReady(ctx, cl, masters)
			if ok {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("redis cluster node %s not ready within 30s: %s", c.Nodes[i].Addr, why)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// nodeReady reports whether a node sees the whole cluster as ok.
func nodeReady(ctx context.Context, cl rueidis.Client, masters int) (bool, string) {
	info, err := cl.Do(ctx, cl.B().ClusterInfo().Build()).ToString()
	if err != nil {
		return false, err.Error()
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return false, "cluster_state not ok"
	}
	if !strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(masters)+"\r") {
		return false, "not every node known"
	}
	if !strings.Contains(info, "cluster_slots_ok:16384") {
		return false, "not every slot ok"
	}
	shards, err := cl.Do(ctx, cl.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return false, err.Error()
	}
	if len(shards) != masters {
		return false, "CLUSTER SLOTS lists " + strconv.Itoa(len(shards)) + " ranges"
	}
	return true, ""
}

func splitAddr(tb testing.TB, addr string) (string, string) {
	tb.Helper()
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		tb.Fatalf("address %q has no port", addr)
	}
	return addr[:i], addr[i+1:]
}
