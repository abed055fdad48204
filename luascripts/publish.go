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

// Publish runs the publish script with the arguments in a (see Build). A
// refused batch returns a *RefusedError, a fenced one a *FencedError.
func Publish(ctx context.Context, c rueidis.Client, a *PublishArgs) (PublishResult, error) {
	vals, err := publishScript.Exec(ctx, c, a.Keys, a.Args).ToArray()
	if err != nil {
		return PublishResult{}, fmt.Errorf("run publish script: %w", err)
	}
	if len(vals) != 5 {
		return PublishResult{}, fmt.Errorf("run publish script: reply has %d values, want 5", len(vals))
	}
	added, err1 := vals[0].AsInt64()
	skipped, err2 := vals[1].AsInt64()
	status, err3 := vals[2].ToString()
	if err := errors.Join(err1, err2, err3); err != nil {
		return PublishResult{}, fmt.Errorf("run publish script: bad reply: %w", err)
	}
	seq, _ := vals[4].ToString()
	if status == "fenced" {
		fe := &FencedError{Node: seq}
		fe.Fence, _ = vals[3].ToString()
		return PublishResult{}, fe
	}
	if CheckpointStatus(status) != StatusOK {
		sess, _ := vals[3].ToString()
		return PublishResult{}, &RefusedError{Key: a.Keys[0], Status: CheckpointStatus(status), StoredSession: sess, StoredSeq: seq}
	}
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil {
		return PublishResult{}, fmt.Errorf("run publish script: bad checkpoint seq in reply: %w", err)
	}
	return PublishResult{Added: added, Skipped: skipped, Seq: n}, nil
}
