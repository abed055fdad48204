package broker_test

import (
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
)

type recordingObserver struct {
	mu      sync.Mutex
	batches []int
	redis   []time.Duration
	ages    []time.Duration
}

func (o *recordingObserver) Batch(bot string, events int, took, redis time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if bot == "b" && took >= redis {
		o.batches = append(o.batches, events)
		o.redis = append(o.redis, redis)
	}
}

func (o *recordingObserver) EventAge(bot string, age time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if bot == "b" {
		o.ages = append(o.ages, age)
	}
}

// TestPublisher_Observer: every published event's age and every batch reach
// the Observer; a filtered event is in its batch but has no age.
func TestPublisher_Observer(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	o := &recordingObserver{}
	p := newPublisher(t, c, broker.PublisherConfig{Observer: o, Bots: []broker.BotConfig{{
		Name: "b", Filters: broker.FilterConfig{Ignore: []string{"TYPING_START"}},
	}}})
	now := time.Now()
	for seq := int64(1); seq <= 5; seq++ {
		e := ev(seq, "MESSAGE_CREATE", `{"id":"1"}`)
		if seq == 3 {
			e.Type = "TYPING_START"
		}
		e.Received = now.Add(-time.Hour)
		mustPublish(t, p, e)
	}
	flush(t, p, "b", 0)
	o.mu.Lock()
	defer o.mu.Unlock()
	total := 0
	for i, n := range o.batches {
		total += n
		if o.redis[i] <= 0 {
			t.Errorf("batch %d: redis round trip %v, want > 0", i, o.redis[i])
		}
	}
	if total != 5 {
		t.Errorf("batches %v carry %d events, want 5", o.batches, total)
	}
	if len(o.ages) != 4 {
		t.Fatalf("got %d ages, want 4 (the filtered event is not published)", len(o.ages))
	}
	for _, a := range o.ages {
		if a < time.Hour {
			t.Errorf("age %v, want at least the hour since receive", a)
		}
	}
}
