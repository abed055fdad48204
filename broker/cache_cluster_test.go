package broker

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/redistest"
)

// startCacheCluster starts a Redis Cluster of n masters (no replicas) and
// returns a cluster client. (redistest may grow a shared StartCluster; this
// one is the cache tests' own.)
func startCacheCluster(t *testing.T, n int) rueidis.Client {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		srv := redistest.Start(t, redistest.Options{Args: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
		}})
		addrs[i] = srv.Addr
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		for {
			out, err := exec.Command("redis-cli", "-h", strings.Split(a, ":")[0], "-p", strings.Split(a, ":")[1], "cluster", "info").Output()
			if err == nil && strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok within 20s: %s %v", a, out, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var client rueidis.Client
	for {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true})
		if err == nil {
			if len(c.Nodes()) == n {
				client = c
				break
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster client: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(client.Close)
	// Every node must answer for its slots before the tests start.
	for {
		err := client.Do(context.Background(), client.B().Set().Key("probe{x}").Value("1").Build()).Error()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not writable: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return client
}

// TestCacheCluster runs the cache suites on three masters: every script
// call touches one slot, or Redis (and rueidis) would refuse it.
func TestCacheCluster(t *testing.T) {
	client := startCacheCluster(t, 3)
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
