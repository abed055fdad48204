package broker

import "time"

// PublishObserver is told about each batch once it is on its streams, for
// metrics. Its methods are called from the shard's publishing goroutine:
// they must be quick and must not block.
type PublishObserver interface {
	// Batch: events of bot went out in one batch. took runs from the
	// batch taken off the queue to its checkpoint (cache scripts and
	// retries included); redis is the publish script's round trip.
	Batch(bot string, events int, took, redis time.Duration)
	// EventAge: an event of bot is on its stream age after feathery
	// received it from Discord.
	EventAge(bot string, age time.Duration)
}

// observe reports a committed run to the Observer.
func (sq *shardQueue) observe(run []*item, began time.Time) {
	o := sq.b.p.cfg.Observer
	now := time.Now()
	bot := sq.b.name
	o.Batch(bot, len(run), now.Sub(began), sq.sc.rtt)
	for i, it := range run {
		if sq.sc.dec[i] == decPublish && !it.ev.Received.IsZero() {
			o.EventAge(bot, now.Sub(it.ev.Received))
		}
	}
}
