package luascripts_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/luascripts"
	"github.com/redis/rueidis"
)

// A slot holds its bucket until the holder reports the IDENTIFY sent; the
// report re-arms the bucket for one window from then. Garbage in the bucket
// key gives a clear error or is overwritten, never an endless wait.
func TestIdentifySent(t *testing.T) {
	servers(t, func(t *testing.T, c rueidis.Client) {
		ctx := context.Background()
		b0, rem := "p:{bot:x}:identify:bucket:0", "p:{bot:x}:identify:remaining"
		pttl := func(key string) time.Duration {
			t.Helper()
			ms, err := c.Do(ctx, c.B().Pttl().Key(key).Build()).AsInt64()
			if err != nil {
				t.Fatal(err)
			}
			return time.Duration(ms) * time.Millisecond
		}
		if r, err := luascripts.Identify(ctx, c, b0, rem, "3", time.Hour, 100, time.Hour); err != nil || r.Outcome != luascripts.IdentifyTaken {
			t.Fatalf("take: %+v %v", r, err)
		}
		if d := pttl(b0); d <= time.Hour {
			t.Fatalf("unreported slot holds the bucket for %v, want the %d-window hold", d, luascripts.IdentifyHold)
		}
		// Another holder's report leaves shard 3's hold alone.
		if err := luascripts.IdentifySent(ctx, c, b0, "7", time.Hour); err != nil {
			t.Fatal(err)
		}
		if d := pttl(b0); d <= time.Hour {
			t.Fatalf("another holder's report cut the hold to %v", d)
		}
		// Shard 3's own report: one window from now.
		if err := luascripts.IdentifySent(ctx, c, b0, "3", time.Hour); err != nil {
			t.Fatal(err)
		}
		if d := pttl(b0); d <= 0 || d > time.Hour {
			t.Fatalf("after the report the bucket expires in %v, want (0, 1h]", d)
		}
		// A report lengthens a shorter TTL: the window counts from the send.
		c.Do(ctx, c.B().Set().Key(b0).Value("sent").Px(time.Second).Build())
		if err := luascripts.IdentifySent(ctx, c, b0, "9", time.Hour); err != nil {
			t.Fatal(err)
		}
		if d := pttl(b0); d <= time.Second {
			t.Fatalf("a report after a 1s window left %v, want about an hour", d)
		}
		// A key without TTL (garbage) is re-armed, a missing key set.
		c.Do(ctx, c.B().Set().Key(b0).Value("junk").Build())
		if err := luascripts.IdentifySent(ctx, c, b0, "3", time.Hour); err != nil {
			t.Fatal(err)
		}
		if d := pttl(b0); d <= 0 || d > time.Hour {
			t.Fatalf("persistent garbage: after the report it expires in %v, want (0, 1h]", d)
		}
		c.Do(ctx, c.B().Del().Key(b0).Build())
		if err := luascripts.IdentifySent(ctx, c, b0, "3", time.Hour); err != nil {
			t.Fatal(err)
		}
		if d := pttl(b0); d <= 0 || d > time.Hour {
			t.Fatalf("missing key: after the report it expires in %v, want (0, 1h]", d)
		}
		// A key of another type: a clear error.
		c.Do(ctx, c.B().Del().Key(b0).Build())
		c.Do(ctx, c.B().Hset().Key(b0).FieldValue().FieldValue("a", "b").Build())
		if err := luascripts.IdentifySent(ctx, c, b0, "3", time.Hour); err == nil {
			t.Fatal("hash in the bucket key: no error")
		}
		// A TTL longer than any hold would be waited out forever: an error
		// naming the key.
		c.Do(ctx, c.B().Del().Key(b0).Build())
		c.Do(ctx, c.B().Set().Key(b0).Value("1").Px(1000*time.Hour).Build())
		_, err := luascripts.Identify(ctx, c, b0, rem, "3", time.Hour, 100, time.Hour)
		if err == nil || !strings.Contains(err.Error(), b0) {
			t.Fatalf("bucket key expiring in 1000h: %v, want an error naming it", err)
		}
	})
}
