package broker

import (
	"strconv"
	"strings"
	"testing"
)

func newTestBot(cfg BotConfig) *botState {
	return newBotState(&Publisher{keys: NewKeys("")}, cfg)
}

// 20,000 distinct event names keep a bot's name table and its counters
// bounded: Discord's names plus maxOtherEventTypes, then "other". Every
// event keeps its own name and its route.
func TestBotState_EventTypesBounded(t *testing.T) {
	b := newTestBot(BotConfig{Name: "b", Routes: []Route{{Events: []string{"X_*"}, StreamConfig: StreamConfig{Stream: "x"}}}})
	const n = 20000
	for i := range n {
		name := "X_" + strconv.Itoa(i)
		ti := b.typeInfo(name)
		if ti.name != name || ti.stream != 1 {
			t.Fatalf("event %s: decided as name %q stream %d, want its own name on stream 1", name, ti.name, ti.stream)
		}
	}
	long := "X_" + strings.Repeat("A", maxEventTypeLen)
	if ti := b.typeInfo(long); ti.name != long || ti.stream != 1 {
		t.Fatalf("long name: got %q stream %d", ti.name, ti.stream)
	}
	b.typeInfo("MESSAGE_CREATE")
	table := len(*b.conf.Load().types.Load())
	if want := len(discordEventTypes) + maxOtherEventTypes; table != want {
		t.Errorf("name table holds %d names, want %d (Discord's %d + %d others)", table, want, len(discordEventTypes), maxOtherEventTypes)
	}
	if _, ok := (*b.conf.Load().types.Load())[long]; ok {
		t.Errorf("a %d-byte name was kept", len(long))
	}
	counts := b.eventTypes()
	if len(counts) != maxOtherEventTypes+2 {
		t.Errorf("counters under %d names, want %d (64 others, MESSAGE_CREATE, other)", len(counts), maxOtherEventTypes+2)
	}
	if got, want := counts[OtherEventType], uint64(n-maxOtherEventTypes+1); got != want {
		t.Errorf("other: %d, want %d", got, want)
	}
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total != n+2 {
		t.Errorf("counted %d events, want %d", total, n+2)
	}
}

// FuzzBotState_TypeInfo: any name is decided as a fresh decision would be
// and keeps its bytes; the table never exceeds its bound.
func FuzzBotState_TypeInfo(f *testing.F) {
	for _, s := range []string{"MESSAGE_CREATE", "READY", "X_1", "", "other", strings.Repeat("Z", 200), "GUILD_\x00"} {
		f.Add(s)
	}
	b := newTestBot(BotConfig{Name: "b",
		Filters: FilterConfig{Ignore: []string{"TYPING_*"}, CacheOnly: []string{"*_UPDATE"}},
		Routes:  []Route{{Events: []string{"MESSAGE_*", "X_?"}, StreamConfig: StreamConfig{Stream: "m"}}}})
	ref := newTestBot(b.conf.Load().cfg)
	f.Fuzz(func(t *testing.T, name string) {
		got, want := b.typeInfo(name), ref.conf.Load().decide(name)
		if got.name != name || got.action != want.action || got.stream != want.stream || got.msg != want.msg || got.ready != want.ready {
			t.Fatalf("%q: got %+v, want %+v", name, got, want)
		}
		if n := len(*b.conf.Load().types.Load()); n > len(discordEventTypes)+maxOtherEventTypes {
			t.Fatalf("table holds %d names", n)
		}
	})
}

// BenchmarkBotState_TypeInfo measures the per-event lookup: a Discord name,
// a kept other name, and names past the table's bound.
func BenchmarkBotState_TypeInfo(b *testing.B) {
	bot := newTestBot(BotConfig{Name: "b", Routes: []Route{{Events: []string{"MESSAGE_*"}, StreamConfig: StreamConfig{Stream: "m"}}}})
	names := make([]string, 4096)
	for i := range names {
		names[i] = "CUSTOM_" + strconv.Itoa(i)
	}
	bot.typeInfo("KEPT")
	for _, c := range []struct {
		name  string
		names []string
	}{
		{"name=discord", []string{"MESSAGE_CREATE"}},
		{"name=kept", []string{"KEPT"}},
		{"name=distinct", names},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				bot.typeInfo(c.names[i%len(c.names)])
			}
		})
	}
}
