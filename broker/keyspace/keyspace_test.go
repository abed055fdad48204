package keyspace_test

import (
	"testing"

	"github.com/feathery/feathery/broker/keyspace"
	"github.com/feathery/feathery/gateway/testkit"
)

// Readers import keyspace to name the keys; it stays a leaf so they link
// nothing else of feathery's.
func TestLeaf(t *testing.T) {
	t.Parallel()
	deps := testkit.NonStandardDeps(t, ".")
	if len(deps) != 1 || deps[0] != "github.com/feathery/feathery/broker/keyspace" {
		t.Fatalf("keyspace links %v; it may import the standard library only", deps)
	}
}

func TestLayout(t *testing.T) {
	t.Parallel()
	k, c := keyspace.NewKeys(""), keyspace.NewCacheKeys("")
	for _, tc := range []struct{ got, want string }{
		{k.Events("b"), "feathery:{bot:b}:events"},
		{k.Stream("b", "messages"), "feathery:{bot:b}:messages"},
		{k.Session("b", 3), "feathery:{bot:b}:session:3"},
		{k.IdentifyBucket("b", 2), "feathery:{bot:b}:identify:bucket:2"},
		{k.IdentifyRemaining("b"), "feathery:{bot:b}:identify:remaining"},
		{k.Control(), "feathery:control"},
		{k.GuildPrefixes(81384788765712384, "b"), "feathery:{81384788765712384}:prefixes:b"},
		{keyspace.NewKeys("fx").Events("b"), "fx:{bot:b}:events"},
		{c.CacheGuild("7"), "feathery:cache:{7}:guild"},
		{c.CacheVoiceStates("7"), "feathery:cache:{7}:voice_states"},
		{c.CacheUsers("9"), "feathery:cache:{u9}:users"},
		{c.CacheUsers("80351110224678912"), "feathery:cache:{u912}:users"},
		{keyspace.NewCacheKeys("ns").CacheMembers("7"), "ns:{7}:members"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
