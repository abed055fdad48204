package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feathery/feathery/consumers"
	"github.com/redis/rueidis"
)

// Verifier records the stream entries a reader got and checks them against
// the fake's ledger: each ledger entry must have been read exactly once,
// with its t and d byte for byte, and the entries of one session must stand
// on their stream in seq order. Record is safe for concurrent use.
type Verifier struct {
	exact bool // compare d byte for byte (false: after JSON normalisation)
	seed  maphash.Seed

	mu      sync.Mutex
	shards  map[int]map[string]*sessionReads // shard -> session -> reads
	streams map[string]uint8
	// unexpected counts reads that cannot belong to any ledger entry
	// (bad seq); more are found by Check.
	unexpected int64
	problems   []string

	read atomic.Int64
}

// sessionReads holds what was read for one session, indexed by seq-1.
type sessionReads struct {
	at    []int64  // read time, unix ns; 0 = not read
	recv  []int64  // feathery's receive time (field at), unix ms
	hash  []uint64 // hash of t and d
	id    []uint64 // stream entry id packed as ms<<20 | seq-in-ms
	count []uint16 // times read
	sid   []uint8  // stream index
}

// maxSeq bounds the seqs the verifier keeps room for.
const maxSeq = 1 << 31

// maxProblems bounds the problem descriptions kept.
const maxProblems = 20

// NewVerifier returns an empty verifier comparing d byte for byte when
// exact is true (an in-process fake), after JSON normalisation otherwise.
func NewVerifier(exact bool) *Verifier {
	return &Verifier{exact: exact, seed: maphash.MakeSeed(), shards: map[int]map[string]*sessionReads{}, streams: map[string]uint8{}}
}

// Read is the number of entries recorded.
func (v *Verifier) Read() int64 { return v.read.Load() }

// Handler records each message with the time it was handed over and
// acknowledges it.
func (v *Verifier) Handler() consumers.Handler {
	return func(_ context.Context, m consumers.Message) error {
		v.Record(m, time.Now())
		return nil
	}
}

func (v *Verifier) digest(t string, d []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(v.seed)
	h.WriteString(t)
	h.WriteByte(0)
	if v.exact {
		h.Write(d)
	} else {
		h.Write(normalizeJSON(d))
	}
	return h.Sum64()
}

// normalizeJSON compacts d and escapes HTML characters the way
// encoding/json re-encodes raw JSON; invalid JSON is returned as is.
func normalizeJSON(d []byte) []byte {
	var c bytes.Buffer
	if err := json.Compact(&c, d); err != nil {
		return d
	}
	var out bytes.Buffer
	json.HTMLEscape(&out, c.Bytes())
	return out.Bytes()
}

// packID packs an entry id "ms-n" into one number that orders like the id.
func packID(id string) (uint64, bool) {
	ms, n, ok := strings.Cut(id, "-")
	if !ok {
		return 0, false
	}
	a, err1 := strconv.ParseUint(ms, 10, 44)
	b, err2 := strconv.ParseUint(n, 10, 20)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return a<<20 | b, true
}

// Record notes that m was read at at.
func (v *Verifier) Record(m consumers.Message, at time.Time) {
	v.read.Add(1)
	h := v.digest(m.T, m.D)
	id, idOK := packID(m.ID)
	v.mu.Lock()
	defer v.mu.Unlock()
	if m.Seq < 1 || m.Seq > maxSeq || !idOK {
		v.unexpected++
		v.problemLocked("entry %s on %s: seq %d or id not usable", m.ID, m.Stream, m.Seq)
		return
	}
	sid, ok := v.streams[m.Stream]
	if !ok {
		sid = uint8(len(v.streams))
		v.streams[m.Stream] = sid
	}
	sess := v.shards[m.Shard]
	if sess == nil {
		sess = map[string]*sessionReads{}
		v.shards[m.Shard] = sess
	}
	r := sess[m.Session]
	if r == nil {
		r = &sessionReads{}
		sess[m.Session] = r
	}
	i := int(m.Seq - 1)
	if i >= len(r.at) {
		n := max(i+1, 2*len(r.at), 256)
		r.at = slices.Grow(r.at, n-len(r.at))[:n]
		r.hash = slices.Grow(r.hash, n-len(r.hash))[:n]
		r.recv = slices.Grow(r.recv, n-len(r.recv))[:n]
		r.id = slices.Grow(r.id, n-len(r.id))[:n]
		r.count = slices.Grow(r.count, n-len(r.count))[:n]
		r.sid = slices.Grow(r.sid, n-len(r.sid))[:n]
	}
	if r.count[i] == 0 {
		r.at[i], r.hash[i], r.id[i], r.sid[i], r.recv[i] = at.UnixNano(), h, id, sid, m.At.UnixMilli()
	}
	if r.count[i] < 1<<16-1 {
		r.count[i]++
	}
}

// unreadable counts an entry that could not be decoded.
func (v *Verifier) unreadable(id string, err error) {
	v.read.Add(1)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.unexpected++
	v.problemLocked("entry %s: %v", id, err)
}

func (v *Verifier) problemLocked(format string, args ...any) {
	if len(v.problems) < maxProblems {
		v.problems = append(v.problems, fmt.Sprintf(format, args...))
	}
}

// Verdict is the outcome of checking what was read against the ledger.
type Verdict struct {
	// Expected is the number of ledger entries (every dispatch sent).
	Expected int64 `json:"expected"`
	// Verified entries were read once or more with the right t and d.
	Verified int64 `json:"verified"`
	// Lost entries are in the ledger and were never read.
	Lost int64 `json:"lost"`
	// Duplicated counts extra reads of an entry (a stream holding it twice).
	Duplicated int64 `json:"duplicated"`
	// OutOfOrder counts entries whose stream position is before that of a
	// lower seq of the same session on the same stream.
	OutOfOrder int64 `json:"out_of_order"`
	// Mismatched entries were read with another t or d than sent.
	Mismatched int64 `json:"mismatched"`
	// Unexpected reads match no ledger entry (unknown session or seq).
	Unexpected int64 `json:"unexpected"`
	// Problems describe the first few faults found.
	Problems []string `json:"problems,omitempty"`

	// latency samples of verified entries: read time - SentAt, with the
	// read time, for windowed figures.
	samples []sample
}

type sample struct {
	readAt  int64
	latency time.Duration
	recv    time.Duration // SentAt to feathery's receive time (ms precision)
	size    int
}

// OK reports whether every entry arrived once, intact and in order.
func (d Verdict) OK() bool {
	return d.Lost == 0 && d.Duplicated == 0 && d.OutOfOrder == 0 && d.Mismatched == 0 && d.Unexpected == 0
}

// Window is the part of a verdict whose reads fall in [from, to).
type Window struct {
	Events  int64
	Latency Latency
	// Receive is the part from the fake's send to feathery's receive time
	// (the entry's at field, millisecond precision).
	Receive Latency
	// PayloadBytes is the mean size of the events' d.
	PayloadBytes int
}

// Latency are latency percentiles in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Window counts the verified entries read in [from, to) and their latency
// (fake's SentAt to the reader's handler call).
func (d Verdict) Window(from, to time.Time) Window {
	var lat, recv []time.Duration
	f, t := from.UnixNano(), to.UnixNano()
	size := 0
	for _, s := range d.samples {
		if s.readAt >= f && s.readAt < t {
			lat = append(lat, s.latency)
			recv = append(recv, max(s.recv, 0)) // at is truncated to the millisecond
			size += s.size
		}
	}
	w := Window{Events: int64(len(lat)), Latency: percentiles(lat), Receive: percentiles(recv)}
	if len(lat) > 0 {
		w.PayloadBytes = size / len(lat)
	}
	return w
}

func percentiles(x []time.Duration) Latency {
	if len(x) == 0 {
		return Latency{}
	}
	slices.Sort(x)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Latency{P50: ms(x[len(x)/2]), P99: ms(x[min(len(x)-1, len(x)*99/100)]), Max: ms(x[len(x)-1])}
}

// Check compares what was read with the ledger of every shard in shards.
func (v *Verifier) Check(f Fake, shards []int) (Verdict, error) {
	var d Verdict
	v.mu.Lock()
	defer v.mu.Unlock()
	d.Unexpected = v.unexpected
	d.Problems = append(d.Problems, v.problems...)
	problem := func(format string, args ...any) {
		if len(d.Problems) < maxProblems {
			d.Problems = append(d.Problems, fmt.Sprintf(format, args...))
		}
	}
	seen := map[int]bool{}
	for _, shard := range shards {
		seen[shard] = true
		ledger, err := f.Ledger(shard)
		if err != nil {
			return d, fmt.Errorf("read ledger of shard %d: %w", shard, err)
		}
		reads := v.shards[shard]
		inLedger := map[string]bool{}
		for _, ls := range ledger {
			inLedger[ls.Session] = true
			r := reads[ls.Session]
			lastID := make(map[uint8]uint64)
			for _, e := range ls.Entries {
				d.Expected++
				i := int(e.Seq - 1)
				if r == nil || i < 0 || i >= len(r.at) || r.count[i] == 0 {
					d.Lost++
					problem("lost: shard %d session %s seq %d %s", shard, ls.Session, e.Seq, e.T)
					continue
				}
				if n := int64(r.count[i]); n > 1 {
					d.Duplicated += n - 1
					problem("duplicated: shard %d session %s seq %d %s read %d times", shard, ls.Session, e.Seq, e.T, n)
				}
				if last, ok := lastID[r.sid[i]]; ok && r.id[i] < last {
					d.OutOfOrder++
					problem("out of order: shard %d session %s seq %d stands before a lower seq", shard, ls.Session, e.Seq)
				}
				lastID[r.sid[i]] = r.id[i]
				if r.hash[i] != v.digest(e.T, e.D) {
					d.Mismatched++
					problem("mismatched: shard %d session %s seq %d %s: t or d differs from what was sent", shard, ls.Session, e.Seq, e.T)
					continue
				}
				d.Verified++
				d.samples = append(d.samples, sample{readAt: r.at[i], latency: time.Duration(r.at[i] - e.SentAt.UnixNano()),
					recv: time.Duration(r.recv[i])*time.Millisecond - time.Duration(e.SentAt.UnixNano()), size: len(e.D)})
			}
			// Reads beyond the ledger's last seq.
			if r != nil {
				last := 0
				if n := len(ls.Entries); n > 0 {
					last = int(ls.Entries[n-1].Seq)
				}
				for i := last; i < len(r.at); i++ {
					if r.count[i] > 0 {
						d.Unexpected += int64(r.count[i])
						problem("unexpected: shard %d session %s seq %d was never sent", shard, ls.Session, i+1)
					}
				}
			}
		}
		for sess, r := range reads {
			if !inLedger[sess] {
				for _, c := range r.count {
					d.Unexpected += int64(c)
				}
				problem("unexpected: shard %d session %s is not in the ledger", shard, sess)
			}
		}
	}
	for shard, reads := range v.shards {
		if !seen[shard] {
			for _, r := range reads {
				for _, c := range r.count {
					d.Unexpected += int64(c)
				}
			}
			problem("unexpected: entries of shard %d, which is not benchmarked", shard)
		}
	}
	return d, nil
}

// ReadOptions configure ReadGroup.
type ReadOptions struct {
	// Streams are the stream keys to read.
	Streams []string
	// Group is the consumer group; default "feathery-bench". It is created
	// at "0" (the whole stream) if missing.
	Group string
	// Consumers is the number of group readers, each with its own consumer
	// name, sharing the work; default 4.
	Consumers int
	// Count is the most entries per XREADGROUP; default 500.
	Count int64
	// Plain reads the streams with consumers.Tail (XREAD, no group, nothing
	// acknowledged) instead of a consumer group; Consumers and Group are
	// then unused.
	Plain bool
}

// ReadGroup reads the streams through a consumer group with
// consumers.GroupReader (Consumers readers in parallel) and records every
// entry in v. It returns when ctx is done and every reader has stopped.
func ReadGroup(ctx context.Context, client rueidis.Client, opts ReadOptions, v *Verifier) error {
	if opts.Group == "" {
		opts.Group = "feathery-bench"
	}
	if opts.Consumers <= 0 {
		opts.Consumers = 4
	}
	if opts.Count <= 0 {
		opts.Count = 500
	}
	if opts.Plain {
		errs := make([]error, len(opts.Streams))
		var wg sync.WaitGroup
		for i, stream := range opts.Streams {
			wg.Go(func() {
				errs[i] = consumers.Tail(ctx, client, stream, "0", func(e consumers.Entry) error {
					m, err := e.Message()
					if err != nil {
						v.unreadable(e.ID, err)
						return nil
					}
					m.Stream = stream
					v.Record(m, time.Now())
					return nil
				})
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	readers := make([]*consumers.GroupReader, opts.Consumers)
	for i := range readers {
		r, err := consumers.NewGroupReader(client, consumers.GroupConfig{
			Streams:       opts.Streams,
			Group:         opts.Group,
			StartID:       "0",
			Consumer:      "bench-" + strconv.Itoa(i),
			Count:         opts.Count,
			Block:         100 * time.Millisecond,
			ClaimIdle:     time.Minute,
			MaxDeliveries: -1,
			ShutdownGrace: time.Second,
		})
		if err != nil {
			return fmt.Errorf("group reader: %w", err)
		}
		readers[i] = r
	}
	errs := make([]error, len(readers))
	var wg sync.WaitGroup
	for i, r := range readers {
		wg.Go(func() { errs[i] = r.Run(ctx, v.Handler()) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// RecordStream reads a whole stream with XRANGE (pages of 1000, no group)
// and records every entry in v, for a check after the fact. It returns the
// number of entries read.
func RecordStream(ctx context.Context, client rueidis.Client, stream string, v *Verifier) (int, error) {
	n := 0
	start := "-"
	for {
		entries, err := client.Do(ctx, client.B().Xrange().Key(stream).Start(start).End("+").Count(1000).Build()).AsXRange()
		if err != nil {
			return n, fmt.Errorf("xrange %s: %w", stream, err)
		}
		now := time.Now()
		for _, e := range entries {
			m, err := consumers.DecodeEntry(e.ID, e.FieldValues)
			if err != nil {
				v.unreadable(e.ID, err)
				continue
			}
			m.Stream = stream
			v.Record(m, now)
		}
		n += len(entries)
		if len(entries) < 1000 {
			return n, nil
		}
		start = "(" + entries[len(entries)-1].ID
	}
}
