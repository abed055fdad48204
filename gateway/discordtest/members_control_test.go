package discordtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway/testkit"
)

type chunkD struct {
	GuildID    string            `json:"guild_id"`
	Members    []json.RawMessage `json:"members"`
	ChunkIndex int               `json:"chunk_index"`
	ChunkCount int               `json:"chunk_count"`
	NotFound   []string          `json:"not_found"`
	Presences  []json.RawMessage `json:"presences"`
	Nonce      string            `json:"nonce"`
}

func TestRequestGuildMembers(t *testing.T) {
	s := startFake(t, Config{Guilds: 1, MembersPerGuild: 2500, MemberRequestInterval: time.Hour})
	c, rd, _ := connectIdentify(t, s, "&compress=zstd-stream", 0, 1, allIntents)
	gid := rd.Guilds[0].ID
	c.send(8, map[string]any{"guild_id": gid, "query": "", "limit": 0, "nonce": "all", "presences": true})
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		f := c.nextDispatch()
		var d chunkD
		if *f.T != "GUILD_MEMBERS_CHUNK" || json.Unmarshal(f.D, &d) != nil {
			t.Fatalf("want a chunk, got %s", truncate(string(f.Raw), 200))
		}
		if d.ChunkIndex != i || d.ChunkCount != 3 || d.Nonce != "all" || d.GuildID != gid || len(d.Members) > 1000 || d.Presences == nil {
			t.Fatalf("chunk %d: index %d count %d nonce %q members %d", i, d.ChunkIndex, d.ChunkCount, d.Nonce, len(d.Members))
		}
		for _, m := range d.Members {
			var mm struct {
				User struct {
					ID string `json:"id"`
				} `json:"user"`
			}
			_ = json.Unmarshal(m, &mm)
			seen[mm.User.ID] = true
		}
	}
	if len(seen) != 2500 {
		t.Fatalf("chunks carried %d distinct members, want 2500", len(seen))
	}
	// A second "all members" request within the interval: RATE_LIMITED.
	c.send(8, map[string]any{"guild_id": gid, "query": "", "limit": 0, "nonce": "again"})
	f := c.nextDispatch()
	var rl struct {
		Opcode     int     `json:"opcode"`
		RetryAfter float64 `json:"retry_after"`
		Meta       struct {
			GuildID string `json:"guild_id"`
			Nonce   string `json:"nonce"`
		} `json:"meta"`
	}
	if *f.T != "RATE_LIMITED" || json.Unmarshal(f.D, &rl) != nil || rl.Opcode != 8 || rl.RetryAfter <= 0 || rl.Meta.GuildID != gid || rl.Meta.Nonce != "again" {
		t.Fatalf("want RATE_LIMITED, got %s", f.Raw)
	}
	// By user ids, with one unknown.
	w := s.Snapshot()
	var some string
	for id := range w.Guilds[gid].Members {
		some = id
		break
	}
	c.send(8, map[string]any{"guild_id": gid, "user_ids": []string{some, "1"}})
	var d chunkD
	if f := c.nextDispatch(); json.Unmarshal(f.D, &d) != nil || len(d.Members) != 1 || len(d.NotFound) != 1 || d.NotFound[0] != "1" {
		t.Fatalf("user_ids chunk: %s", truncate(string(f.Raw), 300))
	}
	// By prefix query with a limit.
	c.send(8, map[string]any{"guild_id": gid, "query": "quiet", "limit": 5})
	d = chunkD{}
	if f := c.nextDispatch(); json.Unmarshal(f.D, &d) != nil || len(d.Members) == 0 || len(d.Members) > 5 {
		t.Fatalf("query chunk: %s", truncate(string(f.Raw), 300))
	}
	for _, m := range d.Members {
		if !strings.Contains(string(m), `"username":"quiet`) && !strings.Contains(string(m), `"nick":"quiet`) {
			t.Fatalf("member %s does not match the prefix", m)
		}
	}
	// Without query or user_ids: 4001.
	c.send(8, map[string]any{"guild_id": gid})
	if code := c.expectClose(); code != 4001 {
		t.Fatalf("close %d, want 4001", code)
	}
}

func TestControlAPI(t *testing.T) {
	s := startFake(t, Config{Guilds: 2, IdentifyWindow: time.Nanosecond, ReconnectDelay: time.Hour})
	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: reply %q is not JSON", method, path, b)
		}
		return resp.StatusCode, m
	}
	// Bad input names the problem.
	for _, tc := range []struct{ method, path, body, want string }{
		{"POST", "/_fake/shards/x/reconnect", "", "shard id"},
		{"POST", "/_fake/shards/0/explode", "", "unknown shard action"},
		{"POST", "/_fake/shards/0/close?code=abc", "", "code"},
		{"POST", "/_fake/shards/0/invalidate?resumable=maybe", "", "resumable"},
		{"GET", "/_fake/ledger?shard=-1", "", "shard"},
		{"POST", "/_fake/dispatch", "{", "body"},
		{"POST", "/_fake/dispatch", `{"shard":0,"t":"X"}`, "required"},
		{"GET", "/_fake/dispatch", "", "wants POST"},
		{"POST", "/_fake/shards/0/reconnect", "", "no connected session"},
	} {
		code, m := do(tc.method, tc.path, tc.body)
		if code < 400 || code >= 500 || !strings.Contains(m["message"].(string), tc.want) {
			t.Errorf("%s %s: %d %v, want a 4xx naming %q", tc.method, tc.path, code, m, tc.want)
		}
	}
	c, rd, got := connectIdentify(t, s, "", 0, 1, allIntents)
	rec := record(c)
	gid := rd.Guilds[0].ID
	// Inject a member update: the model changes and the ledger has the before image.
	w := s.Snapshot()
	var uid string
	for id := range w.Guilds[gid].Members {
		if id != s.BotUserID() {
			uid = id
			break
		}
	}
	var member map[string]any
	_ = json.Unmarshal(w.Guilds[gid].Members[uid], &member)
	member["nick"] = "injected"
	member["guild_id"] = gid
	d, _ := json.Marshal(member)
	body, _ := json.Marshal(map[string]any{"shard": 0, "t": "GUILD_MEMBER_UPDATE", "d": json.RawMessage(d)})
	if code, m := do("POST", "/_fake/dispatch", string(body)); code != 200 {
		t.Fatalf("dispatch: %d %v", code, m)
	}
	if !strings.Contains(string(s.Snapshot().Guilds[gid].Members[uid]), `"nick":"injected"`) {
		t.Fatal("injected update did not change the model")
	}
	entries := s.Ledger(0)[0].Entries
	last := entries[len(entries)-1]
	if last.T != "GUILD_MEMBER_UPDATE" || last.Guild != gid || !sameJSON(last.Before, w.Guilds[gid].Members[uid]) {
		t.Fatalf("ledger entry %s guild %s before %s", last.T, last.Guild, last.Before)
	}
	testkit.Eventually(t, waitTimeout, "injected dispatch read", func() bool { return rec.count() == 1 })
	if f := rec.snapshot()[0]; !bytes.Equal(f.D, last.D) {
		t.Fatalf("client read %s", f.D)
	}
	// An unknown guild for a modelled event is refused.
	if code, m := do("POST", "/_fake/dispatch", `{"shard":0,"t":"GUILD_ROLE_DELETE","d":{"guild_id":"1","role_id":"2"}}`); code != 400 || !strings.Contains(m["message"].(string), "guild") {
		t.Fatalf("unknown guild: %d %v", code, m)
	}
	// Ledger over HTTP.
	code, m := do("GET", "/_fake/ledger?shard=0", "")
	sessions := m["sessions"].([]any)
	if code != 200 || len(sessions) != 1 || len(sessions[0].(map[string]any)["entries"].([]any)) != len(got)+1 {
		t.Fatalf("ledger: %d %v", code, m)
	}
	// Stats.
	code, m = do("GET", "/_fake/stats", "")
	if code != 200 || m["identifies"].(float64) != 1 || m["dispatches_per_shard"].(map[string]any)["0"].(float64) != float64(len(got)+1) {
		t.Fatalf("stats: %d %v", code, m)
	}
	// Shard actions.
	if code, m := do("POST", "/_fake/shards/0/zombie", ""); code != 200 {
		t.Fatalf("zombie: %d %v", code, m)
	}
	if code, m := do("POST", "/_fake/shards/0/reconnect", ""); code != 200 {
		t.Fatalf("reconnect: %d %v", code, m)
	}
	if code, m := do("POST", "/_fake/shards/0/invalidate?resumable=true", ""); code != 200 {
		t.Fatalf("invalidate: %d %v", code, m)
	}
	if code, m := do("POST", "/_fake/shards/0/close?code=4000", ""); code != 200 {
		t.Fatalf("close: %d %v", code, m)
	}
	<-rec.done
	if len(rec.ops) != 2 || rec.ops[0] != 7 || rec.ops[1] != 9 {
		t.Fatalf("ops read %v, want op 7 then op 9", rec.ops)
	}
	var ce interface{ Error() string } = rec.err
	if ce == nil || !strings.Contains(ce.Error(), "4000") {
		t.Fatalf("connection ended with %v, want close 4000", rec.err)
	}
	if code, m := do("POST", "/_fake/rate?rate=5", ""); code != 200 || m["rate"].(float64) != 5 {
		t.Fatalf("rate: %d %v", code, m)
	}
	if code, m := do("GET", "/_fake/world", ""); code != 200 || len(m["guilds"].(map[string]any)) != 2 {
		t.Fatalf("world: %d", code)
	}
}

// TestLedgerOverHTTPIsExact: /_fake/ledger?data=true gives d and before
// byte for byte as sent.
func TestLedgerOverHTTPIsExact(t *testing.T) {
	s := startFake(t, Config{Guilds: 3, Seed: 2})
	c, _, _ := connectIdentify(t, s, "", 0, 1, allIntents)
	c.close()
	s.generate(500)
	resp, err := http.Get(s.URL() + "/_fake/ledger?data=true&shard=0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Sessions []struct {
			Entries []struct {
				Seq    int64           `json:"seq"`
				D      json.RawMessage `json:"d"`
				Before json.RawMessage `json:"before"`
			} `json:"entries"`
		} `json:"sessions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	want := s.Ledger(0)[0].Entries
	got := r.Sessions[0].Entries
	if len(got) != len(want) {
		t.Fatalf("%d entries over HTTP, %d in process", len(got), len(want))
	}
	sawHTML := false
	for i := range want {
		if !bytes.Equal(got[i].D, want[i].D) || !bytes.Equal(got[i].Before, want[i].Before) {
			t.Fatalf("entry %d: HTTP %s / %s, in process %s / %s", i, got[i].D, got[i].Before, want[i].D, want[i].Before)
		}
		sawHTML = sawHTML || bytes.Contains(want[i].D, []byte("<@"))
	}
	if !sawHTML {
		t.Fatal("no mention (with '<') in 500 events: the check proved nothing")
	}
}
