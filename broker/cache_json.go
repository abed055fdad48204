package broker

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// The cache splits Discord payloads into ids and raw JSON pieces without
// decoding them: sonic.Valid checks a payload once, then these helpers walk
// the (valid) bytes and hand out sub-slices.

var errNotObject = errors.New("not a JSON object")

// skipSpace returns the index of the first non-space byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index just after the JSON string opening at i.
func stringEnd(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errors.New("unterminated string")
}

// valueEnd returns the index just after the JSON value starting at i.
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("missing value")
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e, err := stringEnd(b, j)
				if err != nil {
					return 0, err
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("unterminated object or array")
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j, nil
		}
		j++
	}
	return j, nil
}

// eachField calls fn with the key (without quotes, undecoded) and raw value
// of every top-level member of the JSON object b, in order, until fn
// returns false.
func eachField(b []byte, fn func(key, val []byte) bool) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errNotObject
	}
	i++
	for {
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		if i >= len(b) {
			return errors.New("unterminated object")
		}
		if b[i] == '}' {
			return nil
		}
		if b[i] != '"' {
			return fmt.Errorf("want a key at offset %d", i)
		}
		ke, err := stringEnd(b, i)
		if err != nil {
			return err
		}
		key := b[i+1 : ke-1]
		i = skipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return fmt.Errorf("want ':' at offset %d", i)
		}
		vs := skipSpace(b, i+1)
		ve, err := valueEnd(b, vs)
		if err != nil {
			return err
		}
		if ve == vs {
			return fmt.Errorf("missing value at offset %d", vs)
		}
		if !fn(key, b[vs:ve]) {
			return nil
		}
		i = ve
	}
}

// eachElem calls fn with every element of the JSON array b.
func eachElem(b []byte, fn func(elem []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return errors.New("not a JSON array")
	}
	i++
	for {
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		if i >= len(b) {
			return errors.New("unterminated array")
		}
		if b[i] == ']' {
			return nil
		}
		ve, err := valueEnd(b, i)
		if err != nil {
			return err
		}
		if ve == i {
			return fmt.Errorf("missing value at offset %d", i)
		}
		if err := fn(b[i:ve]); err != nil {
			return err
		}
		i = ve
	}
}

// field returns the raw value of the top-level member name of object b.
func field(b []byte, name string) ([]byte, bool) {
	var out []byte
	found := false
	_ = eachField(b, func(k, v []byte) bool {
		if string(k) == name {
			out, found = v, true
			return false
		}
		return true
	})
	return out, found
}

// snowflake reads a raw JSON value holding a snowflake: a string of digits
// (or, leniently, a bare integer). It returns the digits.
func snowflake(raw []byte) (string, error) {
	s := raw
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if len(s) == 0 || len(s) > 20 {
		return "", fmt.Errorf("bad snowflake %.40q", raw)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return "", fmt.Errorf("bad snowflake %.40q", raw)
		}
	}
	return string(s), nil
}

// idField reads the snowflake member name of object b.
func idField(b []byte, name string) (string, error) {
	v, ok := field(b, name)
	if !ok {
		return "", fmt.Errorf("no %s", name)
	}
	id, err := snowflake(v)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return id, nil
}

// isNull reports whether raw is absent or JSON null.
func isNull(raw []byte) bool { return len(raw) == 0 || bytes.Equal(raw, []byte("null")) }

// isTrue reports whether raw is JSON true.
func isTrue(raw []byte) bool { return bytes.Equal(raw, []byte("true")) }

// strip returns object b without the members named in drop, with the
// members of inject (key, raw value) first unless b already has them.
// Whitespace between members is dropped.
func strip(b []byte, drop func(key string) bool, inject ...[2]string) ([]byte, error) {
	if drop == nil {
		return stripKV(b, nil, inject...)
	}
	return stripKV(b, func(k string, _ []byte) bool { return drop(k) }, inject...)
}

// stripKV is strip with drop given each member's raw value too.
func stripKV(b []byte, drop func(key string, val []byte) bool, inject ...[2]string) ([]byte, error) {
	out := make([]byte, 0, len(b)+32)
	out = append(out, '{')
	n := 0
	for _, kv := range inject {
		if _, ok := field(b, kv[0]); ok {
			continue
		}
		if n > 0 {
			out = append(out, ',')
		}
		out = strconv.AppendQuote(out, kv[0])
		out = append(out, ':')
		out = append(out, kv[1]...)
		n++
	}
	err := eachField(b, func(k, v []byte) bool {
		if drop != nil && drop(string(k), v) {
			return true
		}
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, k...)
		out = append(out, '"', ':')
		out = append(out, v...)
		n++
		return true
	})
	if err != nil {
		return nil, err
	}
	return append(out, '}'), nil
}

// quotedKeys lists the top-level keys of obj (written by strip), each in
// its quotes, concatenated — what the member merge takes to skip scanning
// the new member; "" when a key has a backslash or obj cannot be read (the
// merge then scans).
func quotedKeys(obj []byte) string {
	var out []byte
	ok := true
	err := eachField(obj, func(k, _ []byte) bool {
		if bytes.IndexByte(k, '\\') >= 0 {
			ok = false
			return false
		}
		out = append(out, '"')
		out = append(out, k...)
		out = append(out, '"')
		return true
	})
	if err != nil || !ok {
		return ""
	}
	return string(out)
}

// withFirst returns object obj with member key: raw put first (the inverse
// of strip for one member): {"key":raw,...obj's members}.
func withFirst(key string, raw, obj []byte) []byte {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return obj
	}
	rest := obj[skipSpace(obj, i+1):]
	out := make([]byte, 0, len(obj)+len(raw)+len(key)+4)
	out = append(out, '{')
	out = strconv.AppendQuote(out, key)
	out = append(out, ':')
	out = append(out, raw...)
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}
