package consumers

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// Entry is one raw stream entry, as Tail reads it: any stream, any fields
// (feathery's event streams, its control stream, a dead-letter stream).
type Entry struct {
	Stream string
	ID     string
	// Fields are the field/value pairs; nil for an entry deleted while
	// still referenced (never the case for XREAD).
	Fields map[string]string
}

// Message decodes the entry as a feathery event (see DecodeEntry).
func (e Entry) Message() (Message, error) {
	m, err := DecodeEntry(e.ID, e.Fields)
	m.Stream = e.Stream
	return m, err
}

// TailBlock is the longest one XREAD of Tail waits before it asks again.
const TailBlock = 5 * time.Second

// tailCount is the most entries one XREAD of Tail fetches.
const tailCount = 500

// Tail reads one stream without a consumer group (XREAD BLOCK) and calls fn
// for each entry in order, until ctx is cancelled (it then returns nil) or fn
// returns an error (returned wrapped). fromID is where to start, exclusive:
// "$" for entries added from now on, "0" for the whole stream, or an entry id
// to continue after it. Nothing is acknowledged and no group state changes.
func Tail(ctx context.Context, client rueidis.Client, stream, fromID string, fn func(Entry) error) error {
	if fromID == "" {
		fromID = "$"
	}
	if fromID == "$" {
		// Pin "$" to the current last id, so entries added between two
		// reads are not skipped.
		last, err := lastID(ctx, client, stream)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		fromID = last
	}
	for {
		cmd := client.B().Xread().Count(tailCount).Block(TailBlock.Milliseconds()).
			Streams().Key(stream).Id(fromID).Build()
		res, err := client.Do(ctx, cmd).AsXRead()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if rueidis.IsRedisNil(err) {
				continue
			}
			return fmt.Errorf("tail %s: %w", stream, err)
		}
		for _, e := range res[stream] {
			if err := fn(Entry{Stream: stream, ID: e.ID, Fields: e.FieldValues}); err != nil {
				return fmt.Errorf("tail %s entry %s: %w", stream, e.ID, err)
			}
			fromID = e.ID
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// lastID is the id of the stream's last entry, "0-0" when it is empty or
// missing.
func lastID(ctx context.Context, client rueidis.Client, stream string) (string, error) {
	res, err := client.Do(ctx, client.B().Xrevrange().Key(stream).End("+").Start("-").Count(1).Build()).AsXRange()
	if err != nil {
		return "", fmt.Errorf("read last id of %s: %w", stream, err)
	}
	if len(res) == 0 {
		return "0-0", nil
	}
	return res[0].ID, nil
}
