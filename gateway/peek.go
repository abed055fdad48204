package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
)

// envelope is what the read path needs from a gateway payload: the opcode,
// the sequence number, the event name and the raw "d". The slices point into
// the payload buffer.
type envelope struct {
	Op     int
	Seq    int64
	HasSeq bool
	T      []byte // nil when "t" is null or absent
	D      []byte // raw JSON of "d"; nil when absent
	// DGuildID and DID are the raw values of "d.guild_id" and "d.id" when d
	// is an object that has them (found while d is skipped).
	DGuildID []byte
	DID      []byte
}

// guildID returns the guild id of the dispatch named t: "d.id" for events
// about a guild itself, else "d.guild_id"; 0 when there is none.
func (e *envelope) guildID(t string) uint64 {
	switch t {
	case "GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE":
		return snowflake(e.DID)
	}
	return snowflake(e.DGuildID)
}

// snowflake parses a JSON snowflake: a string of digits (or a bare number).
func snowflake(v []byte) uint64 {
	if len(v) >= 2 && v[0] == '"' {
		v = v[1 : len(v)-1]
	}
	n, _ := parseUint(v)
	return n
}

var (
	errNotObject   = errors.New("payload is not a JSON object")
	errTruncated   = errors.New("payload is truncated")
	errBadLiteral  = errors.New("bad JSON literal")
	errBadString   = errors.New("bad JSON string")
	errBadNumber   = errors.New("bad JSON number")
	errTooDeep     = errors.New("JSON nested too deep")
	errMissingOp   = errors.New("payload has no op")
	errBadEnvelope = errors.New("bad payload envelope")
)

// maxDepth bounds nesting so that a hostile payload cannot make the scanner
// spend unbounded stack; Discord payloads nest a handful of levels.
const maxDepth = 512

// peekEnvelope reads op, s, t and d from the top level of p without decoding
// anything else. It allocates nothing.
func peekEnvelope(p []byte) (envelope, error) {
	var env envelope
	i := skipWS(p, 0)
	if i >= len(p) || p[i] != '{' {
		return env, errNotObject
	}
	i++
	hasOp := false
	first := true
	for {
		i = skipWS(p, i)
		if i >= len(p) {
			return env, errTruncated
		}
		if p[i] == '}' {
			if !first {
				return env, errBadEnvelope
			}
			i++
			break
		}
		if p[i] != '"' {
			return env, errBadEnvelope
		}
		ks, ke, next, err := scanString(p, i)
		if err != nil {
			return env, err
		}
		i = skipWS(p, next)
		if i >= len(p) || p[i] != ':' {
			return env, errBadEnvelope
		}
		i = skipWS(p, i+1)
		vs := i
		var ve int
		if string(p[ks:ke]) == "d" && i < len(p) && p[i] == '{' {
			env.DGuildID, env.DID = nil, nil
			ve, err = skipObject(p, i, 0, &env)
		} else {
			ve, err = skipValue(p, i, 0)
		}
		if err != nil {
			return env, err
		}
		v := p[vs:ve]
		switch string(p[ks:ke]) {
		case "op":
			n, ok := parseInt(v)
			if !ok {
				return env, fmt.Errorf("read op: %w", errBadNumber)
			}
			env.Op = int(n)
			hasOp = true
		case "s":
			if !isNull(v) {
				n, ok := parseInt(v)
				if !ok {
					return env, fmt.Errorf("read s: %w", errBadNumber)
				}
				env.Seq, env.HasSeq = n, true
			}
		case "t":
			if !isNull(v) {
				if v[0] != '"' {
					return env, fmt.Errorf("read t: %w", errBadString)
				}
				env.T = v[1 : len(v)-1]
			}
		case "d":
			env.D = v
			if v[0] != '{' {
				env.DGuildID, env.DID = nil, nil
			}
		}
		i = skipWS(p, ve)
		if i >= len(p) {
			return env, errTruncated
		}
		first = false
		if p[i] == ',' {
			i++
			continue
		}
		if p[i] == '}' {
			i++
			break
		}
		return env, errBadEnvelope
	}
	if skipWS(p, i) != len(p) {
		return env, fmt.Errorf("trailing bytes after payload: %w", errBadEnvelope)
	}
	if !hasOp {
		return env, errMissingOp
	}
	return env, nil
}

// skipObject returns the index just after the JSON object starting at
// p[i] == '{', whose values are at depth+1. With env non-nil it also records
// the raw values of the object's top-level "guild_id" and "id" in env.
func skipObject(p []byte, i, depth int, env *envelope) (int, error) {
	i = skipWS(p, i+1)
	if i < len(p) && p[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(p) {
			return 0, errTruncated
		}
		if p[i] != '"' {
			return 0, errBadEnvelope
		}
		ks, ke, next, err := scanString(p, i)
		if err != nil {
			return 0, err
		}
		i = skipWS(p, next)
		if i >= len(p) {
			return 0, errTruncated
		}
		if p[i] != ':' {
			return 0, errBadEnvelope
		}
		vs := skipWS(p, i+1)
		i, err = skipValue(p, vs, depth+1)
		if err != nil {
			return 0, err
		}
		if env != nil {
			switch string(p[ks:ke]) {
			case "guild_id":
				env.DGuildID = p[vs:i]
			case "id":
				env.DID = p[vs:i]
			}
		}
		i = skipWS(p, i)
		if i >= len(p) {
			return 0, errTruncated
		}
		if p[i] == '}' {
			return i + 1, nil
		}
		if p[i] != ',' {
			return 0, errBadEnvelope
		}
		i = skipWS(p, i+1)
	}
}

// guildIDOf returns the guild id of a dispatch: "d.id" for events about a
// guild itself, else "d.guild_id"; 0 when there is none.
func guildIDOf(t string, d []byte) uint64 {
	key := "guild_id"
	switch t {
	case "GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE":
		key = "id"
	}
	v, ok := topLevelValue(d, key)
	if !ok || len(v) < 2 || v[0] != '"' {
		if ok && len(v) > 0 && v[0] >= '0' && v[0] <= '9' {
			n, _ := parseUint(v)
			return n
		}
		return 0
	}
	n, _ := parseUint(v[1 : len(v)-1])
	return n
}

// topLevelValue returns the raw JSON value of key among the top-level keys of
// the object obj (keys compared byte for byte, without unescaping).
func topLevelValue(obj []byte, key string) ([]byte, bool) {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false
	}
	i++
	for {
		i = skipWS(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return nil, false
		}
		ks, ke, next, err := scanString(obj, i)
		if err != nil {
			return nil, false
		}
		i = skipWS(obj, next)
		if i >= len(obj) || obj[i] != ':' {
			return nil, false
		}
		i = skipWS(obj, i+1)
		vs := i
		ve, err := skipValue(obj, i, 0)
		if err != nil {
			return nil, false
		}
		if string(obj[ks:ke]) == key {
			return obj[vs:ve], true
		}
		i = skipWS(obj, ve)
		if i >= len(obj) || obj[i] != ',' {
			return nil, false
		}
		i++
	}
}

// topLevelString returns the unescaped string value of key in obj.
func topLevelString(obj []byte, key string) (string, bool) {
	v, ok := topLevelValue(obj, key)
	if !ok || len(v) < 2 || v[0] != '"' {
		return "", false
	}
	s, err := strconv.Unquote(string(v))
	if err != nil {
		return "", false
	}
	return s, true
}

func isNull(v []byte) bool { return len(v) == 4 && string(v) == "null" }

func skipWS(p []byte, i int) int {
	for i < len(p) {
		switch p[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString scans the string starting at p[i] == '"'. It returns the
// content bounds [s, e) (escapes not decoded) and the index after the
// closing quote.
func scanString(p []byte, i int) (s, e, next int, err error) {
	i++
	s = i
	for i < len(p) {
		// Skip 8 plain bytes at a time: none is '"', '\\' or a control byte.
		for i+8 <= len(p) {
			x := binary.LittleEndian.Uint64(p[i:])
			q := x ^ (lsb * '"')
			b := x ^ (lsb * '\\')
			if m := ((q-lsb)&^q | (b-lsb)&^b | (x-lsb*0x20)&^x) & msb; m != 0 {
				// The lowest flagged byte is exactly the first special one.
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i >= len(p) {
			break
		}
		c := p[i]
		switch {
		case c == '"':
			return s, i, i + 1, nil
		case c == '\\':
			if i+1 >= len(p) {
				return 0, 0, 0, errTruncated
			}
			if p[i+1] == 'u' {
				if i+6 > len(p) {
					return 0, 0, 0, errTruncated
				}
				for _, h := range p[i+2 : i+6] {
					if !isHex(h) {
						return 0, 0, 0, errBadString
					}
				}
				i += 6
				continue
			}
			switch p[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			default:
				return 0, 0, 0, errBadString
			}
			i += 2
		case c < 0x20:
			return 0, 0, 0, errBadString
		default:
			i++
		}
	}
	return 0, 0, 0, errTruncated
}

// Word constants for scanning eight string bytes at once.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// skipValue returns the index just after the JSON value starting at p[i].
func skipValue(p []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errTooDeep
	}
	if i >= len(p) {
		return 0, errTruncated
	}
	switch c := p[i]; {
	case c == '"':
		_, _, next, err := scanString(p, i)
		return next, err
	case c == '{':
		return skipObject(p, i, depth, nil)
	case c == '[':
		i = skipWS(p, i+1)
		if i < len(p) && p[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			i, err = skipValue(p, i, depth+1)
			if err != nil {
				return 0, err
			}
			i = skipWS(p, i)
			if i >= len(p) {
				return 0, errTruncated
			}
			if p[i] == ']' {
				return i + 1, nil
			}
			if p[i] != ',' {
				return 0, errBadEnvelope
			}
			i = skipWS(p, i+1)
		}
	case c == 't':
		return skipLiteral(p, i, "true")
	case c == 'f':
		return skipLiteral(p, i, "false")
	case c == 'n':
		return skipLiteral(p, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		j := i
		if p[j] == '-' {
			j++
		}
		start := j
		for j < len(p) {
			c := p[j]
			if c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' {
				j++
				continue
			}
			break
		}
		if j == start {
			return 0, errBadNumber
		}
		return j, nil
	default:
		return 0, errBadEnvelope
	}
}

func skipLiteral(p []byte, i int, lit string) (int, error) {
	if i+len(lit) > len(p) {
		return 0, errTruncated
	}
	if string(p[i:i+len(lit)]) != lit {
		return 0, errBadLiteral
	}
	return i + len(lit), nil
}

// parseInt parses a JSON integer (no fraction or exponent).
func parseInt(v []byte) (int64, bool) {
	neg := false
	if len(v) > 0 && v[0] == '-' {
		neg = true
		v = v[1:]
	}
	u, ok := parseUint(v)
	if !ok || u > 1<<63-1 {
		return 0, false
	}
	if neg {
		return -int64(u), true
	}
	return int64(u), true
}

// parseUint parses decimal digits into a uint64.
func parseUint(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// objScanner finds where a JSON object that arrives in pieces ends. It
// tracks only nesting and strings; peekEnvelope validates the rest.
type objScanner struct {
	depth   int
	inStr   bool
	esc     bool
	started bool
}

func (s *objScanner) reset() { *s = objScanner{} }

// feed scans b and returns the index just after the byte that closes the
// top-level value, or -1 if it has not closed yet.
func (s *objScanner) feed(b []byte) (int, error) {
	for i := 0; i < len(b); i++ {
		if s.inStr && !s.esc {
			// Jump over plain string bytes a word at a time.
			for i+8 <= len(b) {
				x := binary.LittleEndian.Uint64(b[i:])
				q := x ^ (lsb * '"')
				e := x ^ (lsb * '\\')
				if m := ((q-lsb)&^q | (e-lsb)&^e) & msb; m != 0 {
					i += bits.TrailingZeros64(m) / 8
					break
				}
				i += 8
			}
			if i >= len(b) {
				break
			}
		}
		c := b[i]
		if s.inStr {
			switch {
			case s.esc:
				s.esc = false
			case c == '\\':
				s.esc = true
			case c == '"':
				s.inStr = false
			}
			continue
		}
		switch c {
		case '"':
			if !s.started {
				return -1, errNotObject
			}
			s.inStr = true
		case '{', '[':
			s.started = true
			s.depth++
		case '}', ']':
			if !s.started {
				return -1, errNotObject
			}
			s.depth--
			if s.depth == 0 {
				return i + 1, nil
			}
		case ' ', '\t', '\n', '\r':
		default:
			if !s.started {
				return -1, errNotObject
			}
		}
	}
	return -1, nil
}
