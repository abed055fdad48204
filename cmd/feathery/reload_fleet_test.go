package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/testkit"
)

// TestReload_FleetBotChanges: in a fleet (one node here), a re-shard
// request through the API and a reloaded shard count re-shard the fleet
// through its plan; a reload that adds a bot is refused with an error
// saying how to roll such a change out, the running config stays, and a
// filter-only change still applies.
func TestReload_FleetBotChanges(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	fake := startFake(t, 2, 0)
	env := map[string]string{"TOKEN": testToken, "ADMIN": adminToken, "REST": fake.URL() + "/api/v10", "URL": srv.URL()}
	doc := func(extra string) string {
		return `
redis: {url: "${URL}"}
admin: {addr: "127.0.0.1:0", token: "${ADMIN}"}
discord: {rest_url: "${REST}"}
identify_window: 200ms
shutdown_timeout: 10s
fleet: {lease_ttl: 2s}
bots:
  - name: e2e
    token: ${TOKEN}
    shards: 2
    filters: {ignore: [` + extra + `]}
`
	}
	path := filepath.Join(t.TempDir(), "feathery.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(doc("TYPING_START"))
	cfg, err := loadConfigFile(path, envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	d, err := runDaemon(t.Context(), cfg, daemonDeps{ConfigPath: path, LookupEnv: envOf(env)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	if d.getFleet() == nil {
		t.Fatal("fleet mode is off with an external Redis")
	}

	fleetCount := func(want int) func() string {
		return func() string {
			v := d.getFleet().View()
			if b := v.Bots[0]; b.Count != want || b.Reshard != nil || d.mgr.ShardCount("e2e") != want || len(d.mgr.Resharding()) > 0 {
				return fmt.Sprintf("fleet plan %d shards (re-shard %+v), manager %d shards, want %d", b.Count, b.Reshard, d.mgr.ShardCount("e2e"), want)
			}
			return ""
		}
	}
	if err := d.Reshard(t.Context(), "e2e", 3); err != nil {
		t.Fatalf("re-shard in a fleet: %v", err)
	}
	testkit.EventuallyWhy(t, 60*time.Second, fleetCount(3))
	if err := d.Reshard(t.Context(), "nope", 3); !errors.Is(err, errNotFound) {
		t.Errorf("re-shard of an unknown bot: %v, want not found", err)
	}
	write(strings.Replace(doc("TYPING_START"), "shards: 2", "shards: 4", 1))
	if err := d.Reload(t.Context()); err != nil {
		t.Fatalf("reload with a new shard count: %v", err)
	}
	testkit.EventuallyWhy(t, 60*time.Second, fleetCount(4))
	write(strings.Replace(doc("TYPING_START"), "shards: 2", "shards: 4", 1) + "  - {name: second, token: \"${TOKEN}\"}\n")
	if err := d.Reload(t.Context()); !errors.Is(err, errFleetRuntimeBots) {
		t.Errorf("reload adding a bot: got %v, want a refusal naming fleet mode", err)
	}
	if got := d.config().Bots[0].Filters.Ignore; len(got) != 1 {
		t.Errorf("a refused reload changed the running config: ignore = %v", got)
	}
	write(strings.Replace(doc("TYPING_START, PRESENCE_UPDATE"), "shards: 2", "shards: 4", 1))
	if err := d.Reload(t.Context()); err != nil {
		t.Fatalf("filter-only reload in a fleet: %v", err)
	}
	if got := d.config().Bots[0].Filters.Ignore; len(got) != 2 {
		t.Errorf("filter-only reload: ignore = %v, want 2 names", got)
	}
}
