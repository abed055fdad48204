package luascripts

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
)

//go:embed publish.lua
var publishSrc string

var publishScript = rueidis.NewLuaScript(publishSrc)

// EnvelopeVersion is the value of the "v" field of every stream entry.
const EnvelopeVersion = "1"

// PublishStream is one stream a publish call appends to, with its trim
// policy: TrimKind "" (none), "MAXLEN" or "MINID", and the threshold that
// goes after "~".
type PublishStream struct {
	Key       string
	TrimKind  string
	Threshold string
}

// PublishEntry is one dispatch. Stream indexes PublishCall.Streams. Data and
// Before are passed to Redis without copying (rueidis.BinaryString): they
// must stay unchanged until Publish returns. Guild is 0 and Before empty
// when the event has none (the entry then has no such field).
type PublishEntry struct {
	Stream int
	Seq    int64
	Type   string
	Data   []byte
	Guild  uint64
	Before []byte
	At     int64 // unix ms
}

// PublishCall is one batch of one shard and one session.
type PublishCall struct {
	Checkpoint string // checkpoint hash key
	Streams    []PublishStream
	Session    string
	Seq        int64 // seq of the batch's last event, the new checkpoint
	ResumeURL  string
	ShardCount int
	Intents    uint64
	Bot        string
	Shard      int
	Entries    []PublishEntry
	// Expect is what the caller believes the checkpoint holds; the
	// script refuses the batch when it holds something else (see
	// CheckpointStatus).
	Expect Expectation
	// Repair names the refusal this call may overwrite: the checkpoint is
	// then set to Session/Seq whatever it held, and entries above
	// Expect.Seq are appended. "" repairs nothing.
	Repair CheckpointStatus
	// Lease and Fence fence the call: with Fence > 0 the script refuses
	// the batch (a *FencedError) unless the lease hash Lease holds
	// fencing number Fence. Fence 0 = no fleet, no check.
	Lease string
	Fence int64
}

// Expectation is the checkpoint a publish call expects to find. The zero
// value expects nothing: only the checkpoint's type and form are checked.
type Expectation struct {
	// Session and Seq are the checkpoint the caller believes is stored.
	// Seq 0 means nothing of Session is stored yet: an absent checkpoint
	// or one of another session is then fine.
	Session string
	Seq     int64
	// Written says the caller wrote that checkpoint itself, so a stored
	// seq above both Seq and the call's Seq is refused (StatusAhead) too. Without it (the caller
	// only resumed from the checkpoint) a higher stored seq is taken as
	// published by someone else and the batch's entries at or below it
	// are skipped.
	Written bool
}

// CheckpointStatus is the publish script's verdict on the stored
// checkpoint.
type CheckpointStatus string

// Checkpoint statuses. Every status but StatusOK refuses the batch unless
// the call repairs it.
const (
	StatusOK CheckpointStatus = "ok"
	// StatusWrongType: the checkpoint key is not a hash.
	StatusWrongType CheckpointStatus = "wrongtype"
	// StatusGarbage: the hash's session or seq is not what feathery
	// writes (missing one of them, empty session, seq not a number).
	StatusGarbage CheckpointStatus = "garbage"
	// StatusGone: no checkpoint, while the caller wrote one.
	StatusGone CheckpointStatus = "gone"
	// StatusBehind: the checkpoint went back: a lower seq of the
	// expected session, or another session. Redis lost writes.
	StatusBehind CheckpointStatus = "behind"
	// StatusAhead: a higher seq than the caller wrote and than the
	// batch's last (up to it, the checkpoint may be this batch's own,
	// written by an earlier call whose reply was lost).
	StatusAhead CheckpointStatus = "ahead"
)

// Repairable reports whether the status is about the checkpoint's content
// (a caller resumes from it or overwrites it), as opposed to a refusal of
// the caller itself.
func (s CheckpointStatus) Repairable() bool {
	switch s {
	case StatusWrongType, StatusGarbage, StatusGone, StatusBehind, StatusAhead:
		return true
	}
	return false
}

// PublishResult is the script's reply.
type PublishResult struct {
	Added   int64 // entries appended
	Skipped int64 // entries already published (seq not above the checkpoint)
	// Seq is the checkpoint's seq as written: the call's, or the stored
	// one when that was higher (same session).
	Seq int64
}

// RefusedError is returned by Publish when the script refused the batch
// because of what the checkpoint held. Nothing was written.
type RefusedError struct {
	Key    string // the checkpoint key
	Status CheckpointStatus
	// StoredSession and StoredSeq are what the checkpoint held ("" for
	// an absent field or a key of another type), as found.
	StoredSession string
	StoredSeq     string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("publish refused: checkpoint %s is %s (stored session %q seq %q)", e.Key, e.Status, e.StoredSession, e.StoredSeq)
}

// Seq is StoredSeq as a number, -1 when it is absent or not one.
func (e *RefusedError) Seq() int64 {
	n, err := strconv.ParseInt(e.StoredSeq, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// PublishArgs is a reusable argument buffer for Publish: keep one per
// goroutine to build batches without allocating.
type PublishArgs struct {
	Keys []string
	Args []string
	num  []byte
}

// Build fills a with the KEYS and ARGV of call. The strings for Data and
// Before reference call's byte slices.
func (a *PublishArgs) Build(call *PublishCall) {
	a.num = a.num[:0]
	a.Keys = append(a.Keys[:0], call.Checkpoint)
	for i := range call.Streams {
		a.Keys = append(a.Keys, call.Streams[i].Key)
	}
	fence := ""
	if call.Fence > 0 {
		a.Keys = append(a.Keys, call.Lease)
		fence = a.itoa(call.Fence)
	}
	ascending := "1"
	for i := 1; i < len(call.Entries); i++ {
		if call.Entries[i].Seq <= call.Entries[i-1].Seq {
			ascending = "0"
			break
		}
	}
	a.Args = append(a.Args[:0],
		call.Session,
		a.itoa(call.Seq),
		call.ResumeURL,
		a.itoa(int64(call.ShardCount)),
		a.utoa(call.Intents),
		call.Bot,
		a.itoa(int64(call.Shard)),
		a.itoa(int64(len(call.Streams))),
		EnvelopeVersion,
		a.itoa(int64(len(call.Entries))),
		ascending,
		call.Expect.Session,
		a.itoa(call.Expect.Seq),
		written(call.Expect.Written),
		string(call.Repair),
		fence,
	)
	for i := range call.Streams {
		a.Args = append(a.Args, call.Streams[i].TrimKind, call.Streams[i].Threshold)
	}
	routed := len(call.Streams) > 1
	for i := range call.Entries {
		e := &call.Entries[i]
		if routed {
			a.Args = append(a.Args, a.itoa(int64(e.Stream+1)))
		}
		a.Args = append(a.Args,
			a.itoa(e.Seq),
			e.Type,
			rueidis.BinaryString(e.Data),
			a.guild(e.Guild),
			a.itoa(e.At),
		)
	}
	for i := range call.Entries {
		if b := call.Entries[i].Before; len(b) > 0 {
			a.Args = append(a.Args, a.itoa(int64(i+1)), rueidis.BinaryString(b))
		}
	}
}

func written(w bool) string {
	if w {
		return "w"
	}
	return "r"
}

// itoa formats n into a's number buffer and returns a string view of it.
// The buffer only grows by appending within one Build: views stay valid
// because a fresh backing array is taken when it runs out.
func (a *PublishArgs) itoa(n int64) string {
	if n >= 0 && n < int64(len(smallInts)) {
		return smallInts[n]
	}
	return a.view(strconv.AppendInt(a.grow(20), n, 10))
}

func (a *PublishArgs) guild(id uint64) string {
	if id == 0 {
		return ""
	}
	return a.view(strconv.AppendUint(a.grow(20), id, 10))
}

func (a *PublishArgs) utoa(n uint64) string {
	if n < uint64(len(smallInts)) {
		return smallInts[n]
	}
	return a.view(strconv.AppendUint(a.grow(20), n, 10))
}

// grow makes room for n more bytes without moving bytes already handed out.
func (a *PublishArgs) grow(n int) []byte {
	if cap(a.num)-len(a.num) < n {
		size := 2 * cap(a.num)
		if size < 4096 {
			size = 4096
		}
		a.num = make([]byte, 0, size)
	}
	return a.num[len(a.num):len(a.num)]
}

func (a *PublishArgs) view(b []byte) string {
	a.num = a.num[:len(a.num)+len(b)]
	return rueidis.BinaryString(b)
}

var smallInts = func() []string {
	s := make([]string, 1024)
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

// FencedError is Publish's error when the script refused a batch because
// the shard's lease has another fencing number: another node owns the
// shard now. It wraps ErrFenced.
type FencedError struct {
	// Fence is the lease's fencing number ("" when the lease is missing),
	// Node its owner.
	Fence, Node string
}

// ErrFenced is wrapped by FencedError.
var ErrFenced = errors.New("batch refused: the shard's lease has a newer fencing number")

func (e *FencedError) Error() string {
	return fmt.Sprintf("%v (lease fence %q, owner %q)", ErrFenced, e.Fence, e.Node)
}

func (e *FencedError) Unwrap() error { return ErrFenced }

// Publish runs the publish script with the arguments in a (see Build), as a
// call of one section. A refused batch returns a *RefusedError, a fenced
// one a *FencedError.
func Publish(ctx context.Context, c rueidis.Client, a *PublishArgs) (PublishResult, error) {
	n := len(a.Args)
	a.Args = append(a.Args, a.itoa(int64(len(a.Keys))), a.itoa(int64(n)), "1")
	vals, err := publishScript.Exec(ctx, c, a.Keys, a.Args).ToArray()
	a.Args = a.Args[:n]
	if err != nil {
		return PublishResult{}, fmt.Errorf("run publish script: %w", err)
	}
	var out [1]PublishOutcome
	if _, err := decodePublishReply(len(vals), func(i int) replyValue { return &vals[i] }, a.Keys[:1], out[:0]); err != nil {
		return PublishResult{}, err
	}
	return out[0].Result, out[0].Err
}

// PublishBatch is the argument buffer of a call of several sections: shard
// batches (PublishArgs) whose keys all hash to one Redis Cluster slot, as
// the keys of one bot do. Keep one per goroutine and Reset it between
// calls: it then builds calls without allocating.
type PublishBatch struct {
	Keys []string
	Args []string
	toc  []string // key and argument count of each section
	ck   []string // checkpoint key of each section
	nums PublishArgs
}

// Reset empties b.
func (b *PublishBatch) Reset() {
	b.Keys, b.Args, b.toc, b.ck = b.Keys[:0], b.Args[:0], b.toc[:0], b.ck[:0]
	b.nums.num = b.nums.num[:0]
}

// Add appends a's section; the strings are shared with a, which must stay
// unchanged until the call returns.
func (b *PublishBatch) Add(a *PublishArgs) {
	b.Keys = append(b.Keys, a.Keys...)
	b.Args = append(b.Args, a.Args...)
	b.toc = append(b.toc, b.nums.itoa(int64(len(a.Keys))), b.nums.itoa(int64(len(a.Args))))
	b.ck = append(b.ck, a.Keys[0])
}

// Len is the number of sections.
func (b *PublishBatch) Len() int { return len(b.ck) }

// PublishOutcome is one section's result: Err is a *RefusedError or a
// *FencedError for a refused section, nil when it was written.
type PublishOutcome struct {
	Result PublishResult
	Err    error
}

// PublishMulti runs the publish script once for every section of b; each
// section is checked and written on its own, in order (see publish.lua). It
// appends one outcome per section to out. The error is the call's (Redis
// unreachable, a bad reply): then no outcome is appended, and sections may
// or may not have been written, as for a Publish whose reply was lost.
func PublishMulti(ctx context.Context, c rueidis.Client, b *PublishBatch, out []PublishOutcome) ([]PublishOutcome, error) {
	if len(b.ck) == 0 {
		return out, nil
	}
	n := len(b.Args)
	b.Args = append(b.Args, b.toc...)
	b.Args = append(b.Args, b.nums.itoa(int64(len(b.ck))))
	vals, err := publishScript.Exec(ctx, c, b.Keys, b.Args).ToArray()
	b.Args = b.Args[:n]
	if err != nil {
		return out, fmt.Errorf("run publish script: %w", err)
	}
	return decodePublishReply(len(vals), func(i int) replyValue { return &vals[i] }, b.ck, out)
}

// replyValue is one value of the script's reply, as decodePublishReply
// reads it (*rueidis.RedisMessage).
type replyValue interface {
	AsInt64() (int64, error)
	ToString() (string, error)
}

// decodePublishReply decodes the reply of a call with one section per
// checkpoint key in cks (nvals values, the i-th at(i)), appending one
// outcome per section to out. A reply not as the script writes it is an
// error naming what was wrong; out is then returned as it came.
func decodePublishReply(nvals int, at func(int) replyValue, cks []string, out []PublishOutcome) ([]PublishOutcome, error) {
	if nvals != 5*len(cks) {
		return out, fmt.Errorf("run publish script: reply has %d values, want %d (5 for each of %d sections)", nvals, 5*len(cks), len(cks))
	}
	base := len(out)
	for s, key := range cks {
		o, err := decodeSection(s, at, key)
		if err != nil {
			return out[:base], err
		}
		out = append(out, o)
	}
	return out, nil
}

func decodeSection(s int, at func(int) replyValue, key string) (PublishOutcome, error) {
	v := 5 * s
	added, err1 := at(v).AsInt64()
	skipped, err2 := at(v + 1).AsInt64()
	status, err3 := at(v + 2).ToString()
	x, err4 := at(v + 3).ToString()
	y, err5 := at(v + 4).ToString()
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return PublishOutcome{}, fmt.Errorf("run publish script: bad reply for section %d: %w", s+1, err)
	}
	switch st := CheckpointStatus(status); {
	case status == "fenced":
		return PublishOutcome{Err: &FencedError{Fence: x, Node: y}}, nil
	case st.Repairable():
		return PublishOutcome{Err: &RefusedError{Key: key, Status: st, StoredSession: x, StoredSeq: y}}, nil
	case st != StatusOK:
		return PublishOutcome{}, fmt.Errorf("run publish script: bad reply for section %d: unknown status %q", s+1, status)
	}
	if added < 0 || skipped < 0 {
		return PublishOutcome{}, fmt.Errorf("run publish script: bad reply for section %d: negative count (added %d, skipped %d)", s+1, added, skipped)
	}
	seq, err := strconv.ParseInt(y, 10, 64)
	if err != nil || seq < 0 {
		return PublishOutcome{}, fmt.Errorf("run publish script: bad checkpoint seq %q in reply for section %d", y, s+1)
	}
	return PublishOutcome{Result: PublishResult{Added: added, Skipped: skipped, Seq: seq}}, nil
}
