package broker_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
)

func TestSessionStore_RoundTrip(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	keys := broker.NewKeys("fx")
	store := broker.NewSessionStore(c, keys)
	if _, err := store.Load(t.Context(), "b", 2); !errors.Is(err, broker.ErrNoSession) {
		t.Fatalf("load of nothing: %v, want ErrNoSession", err)
	}
	p := newPublisher(t, c, broker.PublisherConfig{Prefix: "fx"})
	e := ev(77, "TYPING_START", `{}`)
	e.Shard, e.ShardCount, e.Intents = 2, 4, 1<<40
	mustPublish(t, p, e)
	flush(t, p, "b", 2)
	got, err := store.Load(t.Context(), "b", 2)
	want := broker.Session{ID: "s1", Seq: 77, ResumeURL: "wss://resume.example", ShardCount: 4, Intents: 1 << 40}
	if err != nil || got != want {
		t.Fatalf("load: %+v, %v; want %+v", got, err, want)
	}
	if err := store.Delete(t.Context(), "b", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load(t.Context(), "b", 2); !errors.Is(err, broker.ErrNoSession) {
		t.Fatalf("load after delete: %v, want ErrNoSession", err)
	}
}

func TestSessionStore_Malformed(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	keys := broker.NewKeys("")
	store := broker.NewSessionStore(c, keys)
	key := keys.Session("b", 0)
	cases := []struct {
		fields []string
		field  string
	}{
		{[]string{"seq", "5"}, "session"},
		{[]string{"session", "s", "seq", "five"}, "seq"},
		{[]string{"session", "s"}, "seq"},
		{[]string{"session", "s", "seq", "-1"}, "seq"},
		{[]string{"session", "s", "seq", "1", "shards", "x"}, "shards"},
		{[]string{"session", "s", "seq", "1", "intents", "-3"}, "intents"},
	}
	for _, tc := range cases {
		c.Do(t.Context(), c.B().Del().Key(key).Build())
		cmd := c.B().Hset().Key(key).FieldValue()
		for i := 0; i < len(tc.fields); i += 2 {
			cmd = cmd.FieldValue(tc.fields[i], tc.fields[i+1])
		}
		if err := c.Do(t.Context(), cmd.Build()).Error(); err != nil {
			t.Fatal(err)
		}
		_, err := store.Load(t.Context(), "b", 0)
		if !errors.Is(err, broker.ErrBadSession) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "field "+tc.field) {
			t.Errorf("hash %v: error %v, want ErrBadSession naming %s and field %s", tc.fields, err, key, tc.field)
		}
	}
	// A key of another type.
	c.Do(t.Context(), c.B().Del().Key(key).Build())
	c.Do(t.Context(), c.B().Set().Key(key).Value("x").Build())
	if _, err := store.Load(t.Context(), "b", 0); err == nil || !strings.Contains(err.Error(), key) {
		t.Errorf("string key: error %v, want one naming %s", err, key)
	}
}
