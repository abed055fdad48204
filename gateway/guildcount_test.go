package gateway

import "testing"

func TestAutoscaleTarget(t *testing.T) {
	for _, c := range []struct {
		name                                  string
		count, recommended, guilds, maxGuilds int
		want                                  int
	}{
		{"enough", 4, 4, 8000, 2500, 4},
		{"Discord recommends more", 4, 6, 100, 2500, 6},
		{"average above the threshold", 4, 4, 8400, 2000, 6}, // 8400 / 1600 = 5.25
		{"threshold asks more than Discord", 4, 5, 8400, 2000, 6},
		{"Discord asks more than the threshold", 4, 9, 8400, 2000, 9},
		{"threshold off", 4, 4, 100000, 0, 4},
		{"exactly at the threshold", 2, 2, 20, 10, 2},
		{"just above", 2, 2, 21, 10, 3},
		{"a threshold of 1", 1, 1, 2, 1, 2},
	} {
		if got, why := autoscaleTarget(c.count, c.recommended, c.guilds, c.maxGuilds); got != c.want || (got > c.count) != (why != "") {
			t.Errorf("%s: autoscaleTarget(%d, %d, %d, %d) = %d (%q), want %d", c.name, c.count, c.recommended, c.guilds, c.maxGuilds, got, why, c.want)
		}
	}
}

// TestGuildCount: READY's guilds count, their lazy GUILD_CREATEs do not
// add; a join adds, a leave takes away, an outage (unavailable) and the
// guild's return change nothing.
func TestGuildCount(t *testing.T) {
	var c guildCount
	c.observe("READY", []byte(`{"session_id":"s","guilds":[{"id":"1","unavailable":true},{"id":"2","unavailable":true},{"id":"3","unavailable":true}]}`), 0)
	want := func(n int64, what string) {
		t.Helper()
		if got := c.n.Load(); got != n {
			t.Errorf("after %s: %d guilds, want %d", what, got, n)
		}
	}
	want(3, "READY")
	for _, g := range []uint64{1, 2, 3} {
		c.observe("GUILD_CREATE", []byte(`{}`), g)
	}
	want(3, "the lazy GUILD_CREATEs")
	if c.waiting != nil {
		t.Errorf("the waiting set is kept once empty: %v", c.waiting)
	}
	c.observe("GUILD_CREATE", []byte(`{}`), 4)
	want(4, "a join")
	c.observe("GUILD_DELETE", []byte(`{"id":"2","unavailable":true}`), 2)
	want(4, "an outage")
	c.observe("GUILD_CREATE", []byte(`{}`), 2)
	want(4, "the guild's return")
	c.observe("GUILD_DELETE", []byte(`{"id":"3"}`), 3)
	want(3, "a leave")
	c.observe("GUILD_DELETE", []byte(`{"id":"1","unavailable":true}`), 1)
	c.observe("GUILD_DELETE", []byte(`{"id":"1"}`), 1)
	want(2, "a leave during an outage")
	c.observe("MESSAGE_CREATE", []byte(`{}`), 4)
	want(2, "a message")
	c.observe("READY", []byte(`{"session_id":"t","guilds":[]}`), 0)
	want(0, "a new session without guilds")
}
