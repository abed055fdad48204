package luascripts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// fakeValue stands for one value of a script reply: an integer, a string,
// or something neither accessor takes (a nested array, a nil).
type fakeValue struct {
	kind byte // 0 integer, 1 string, 2 other
	i    int64
	s    string
}

func (f fakeValue) AsInt64() (int64, error) {
	switch f.kind {
	case 0:
		return f.i, nil
	case 1:
		return strconv.ParseInt(f.s, 10, 64)
	}
	return 0, errors.New("value is not an integer")
}

func (f fakeValue) ToString() (string, error) {
	if f.kind == 1 {
		return f.s, nil
	}
	return "", errors.New("value is not a string")
}

func decodeFake(vals []fakeValue, sections int) ([]PublishOutcome, error) {
	cks := make([]string, sections)
	for i := range cks {
		cks[i] = fmt.Sprintf("p:{bot:x}:session:%d", i)
	}
	return decodePublishReply(len(vals), func(i int) replyValue { return vals[i] }, cks, nil)
}

func rInt(i int64) fakeValue          { return fakeValue{kind: 0, i: i} }
func rStr(v string) fakeValue         { return fakeValue{kind: 1, s: v} }
func rOther() fakeValue               { return fakeValue{kind: 2} }
func rSec(v ...fakeValue) []fakeValue { return v }

// TestDecodePublishReply: every section gets its own verdict; a reply not
// as the script writes it is an error naming what is wrong, never a panic.
func TestDecodePublishReply(t *testing.T) {
	good := append(append(append(
		rSec(rInt(2), rInt(1), rStr("ok"), rStr("sess"), rStr("41")),
		rSec(rInt(0), rInt(0), rStr("behind"), rStr("sess"), rStr("7"))...),
		rSec(rInt(0), rInt(0), rStr("fenced"), rStr("9"), rStr("node-b"))...),
		rSec(rInt(1), rInt(0), rStr("ok"), rStr("t"), rStr("1"))...)
	out, err := decodeFake(good, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 4 || out[0].Err != nil || out[0].Result != (PublishResult{Added: 2, Skipped: 1, Seq: 41}) {
		t.Fatalf("section 1: %+v", out)
	}
	var re *RefusedError
	if !errors.As(out[1].Err, &re) || re.Status != StatusBehind || re.Key != "p:{bot:x}:session:1" || re.StoredSeq != "7" {
		t.Errorf("section 2: %v, want refused as behind naming its own checkpoint", out[1].Err)
	}
	var fe *FencedError
	if !errors.As(out[2].Err, &fe) || fe.Fence != "9" || fe.Node != "node-b" {
		t.Errorf("section 3: %v, want fenced by 9 of node-b", out[2].Err)
	}
	if out[3].Err != nil || out[3].Result != (PublishResult{Added: 1, Seq: 1}) {
		t.Errorf("section 4: %+v", out[3])
	}

	for _, tc := range []struct {
		name     string
		vals     []fakeValue
		sections int
		want     string
	}{
		{"short", rSec(rInt(1), rInt(0), rStr("ok"), rStr("s")), 1, "reply has 4 values, want 5"},
		{"one section too few", rSec(rInt(1), rInt(0), rStr("ok"), rStr("s"), rStr("1")), 2, "reply has 5 values, want 10"},
		{"added not a number", rSec(rStr("x"), rInt(0), rStr("ok"), rStr("s"), rStr("1")), 1, "bad reply for section 1"},
		{"status not a string", rSec(rInt(1), rInt(0), rOther(), rStr("s"), rStr("1")), 1, "bad reply for section 1"},
		{"unknown status", rSec(rInt(1), rInt(0), rStr("maybe"), rStr("s"), rStr("1")), 1, `unknown status "maybe"`},
		{"seq not a number", rSec(rInt(1), rInt(0), rStr("ok"), rStr("s"), rStr("x1")), 1, `bad checkpoint seq "x1"`},
		{"negative seq", rSec(rInt(1), rInt(0), rStr("ok"), rStr("s"), rStr("-1")), 1, `bad checkpoint seq "-1"`},
		{"negative count", rSec(rInt(-1), rInt(0), rStr("ok"), rStr("s"), rStr("1")), 1, "negative count"},
		{"second section bad", append(rSec(rInt(1), rInt(0), rStr("ok"), rStr("s"), rStr("1")), rSec(rInt(1), rInt(0), rStr("ok"), rOther(), rStr("1"))...), 2, "bad reply for section 2"},
	} {
		out, err := decodeFake(tc.vals, tc.sections)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
		if len(out) != 0 {
			t.Errorf("%s: %d outcomes with an error, want none", tc.name, len(out))
		}
	}
}

// FuzzDecodePublishReply: whatever Redis sends back, decoding ends in an
// error or in one outcome per section, each a verdict or a sane result.
func FuzzDecodePublishReply(f *testing.F) {
	f.Add([]byte("\x01\x00\x02\x00\x00\x01ok\x00\x01s\x00\x0141\x00"), byte(1))
	f.Add([]byte("\x00\x00\x00\x00\x01behind\x00\x01s\x00\x017\x00"), byte(1))
	f.Add([]byte("\x00\x00\x00\x00\x01fenced\x00\x019\x00\x01n\x00\x02"), byte(2))
	f.Fuzz(func(t *testing.T, data []byte, sections byte) {
		var vals []fakeValue
		for len(data) > 0 && len(vals) < 64 {
			kind := data[0] % 3
			data = data[1:]
			v := fakeValue{kind: kind}
			switch kind {
			case 0:
				if len(data) > 0 {
					v.i = int64(int8(data[0]))
					data = data[1:]
				}
			case 1:
				end := len(data)
				for i, c := range data {
					if c == 0 {
						end = i
						break
					}
				}
				v.s = string(data[:end])
				data = data[min(end+1, len(data)):]
			}
			vals = append(vals, v)
		}
		k := int(sections % 16)
		out, err := decodeFake(vals, k)
		if err != nil {
			if len(out) != 0 {
				t.Fatalf("%d outcomes with error %v", len(out), err)
			}
			return
		}
		if len(out) != k {
			t.Fatalf("%d outcomes for %d sections", len(out), k)
		}
		for i, o := range out {
			var re *RefusedError
			var fe *FencedError
			switch {
			case o.Err == nil:
				if r := o.Result; r.Added < 0 || r.Skipped < 0 || r.Seq < 0 {
					t.Fatalf("section %d: result %+v", i+1, r)
				}
			case errors.As(o.Err, &re):
				if !re.Status.Repairable() {
					t.Fatalf("section %d: refused with status %q", i+1, re.Status)
				}
			case errors.As(o.Err, &fe):
			default:
				t.Fatalf("section %d: outcome error %v", i+1, o.Err)
			}
		}
	})
}
