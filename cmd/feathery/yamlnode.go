package main

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The config file is parsed into a yaml.Node tree and decoded by the strict
// walker below rather than by yaml's own struct decoding, so that every error
// names the field's path (bots[0].intents[2]), unknown fields are errors, and
// no error ever echoes a secret value.

// fieldError is a problem with one field of the config.
type fieldError struct {
	Path string // e.g. "bots[0].token"; "" for the document itself
	Line int    // 0 when unknown
	Msg  string
}

func (e *fieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// nodeDecoder is implemented by config types that decode themselves from a
// node. The error is the problem only; the caller adds the path.
type nodeDecoder interface {
	decodeNode(n *yaml.Node) error
}

type nodeWalker struct {
	lines map[string]int // path -> line, filled while decoding
}

func joinPath(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

func indexPath(base string, i int) string { return base + "[" + strconv.Itoa(i) + "]" }

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return "a value"
	}
	return "something else"
}

// safeQuote quotes a user-written value for an error message, unless it is
// long enough to be a credential pasted into the wrong place.
func safeQuote(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("(a %d-character value)", len(s))
	}
	return strconv.Quote(s)
}

func (w *nodeWalker) errf(n *yaml.Node, path, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &fieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// decode decodes n into v (addressable), strictly.
func (w *nodeWalker) decode(n *yaml.Node, v reflect.Value, path string) error {
	for n != nil && (n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode) {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else if len(n.Content) > 0 {
			n = n.Content[0]
		} else {
			n = nil
		}
	}
	if n != nil && w.lines != nil {
		if _, ok := w.lines[path]; !ok {
			w.lines[path] = n.Line
		}
	}
	if isNull(n) {
		v.Set(reflect.Zero(v.Type()))
		return nil
	}
	if v.CanAddr() {
		if d, ok := v.Addr().Interface().(nodeDecoder); ok {
			if err := d.decodeNode(n); err != nil {
				return w.errf(n, path, "%s", err.Error())
			}
			return nil
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := w.decode(n, p.Elem(), path); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		return w.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return w.errf(n, path, "want a list, got %s", kindName(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if err := w.decode(c, s.Index(i), indexPath(path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return w.errf(n, path, "want a string, got %s", kindName(n))
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode {
			return w.errf(n, path, "want true or false, got %s", kindName(n))
		}
		switch strings.ToLower(n.Value) {
		case "true", "yes", "on":
			v.SetBool(true)
		case "false", "no", "off":
			v.SetBool(false)
		default:
			return w.errf(n, path, "want true or false, got %s", safeQuote(n.Value))
		}
		return nil
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.Kind != yaml.ScalarNode {
			return w.errf(n, path, "want an integer, got %s", kindName(n))
		}
		x, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil || v.OverflowInt(x) {
			return w.errf(n, path, "want an integer, got %s", safeQuote(n.Value))
		}
		v.SetInt(x)
		return nil
	}
	return w.errf(n, path, "internal: cannot decode into %s", v.Type())
}

func (w *nodeWalker) decodeStruct(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return w.errf(n, path, "want a mapping of fields, got %s", kindName(n))
	}
	t := v.Type()
	fields := map[string]int{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields[name] = i
		names = append(names, name)
	}
	sort.Strings(names)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return w.errf(k, path, "field names must be plain words, got %s", kindName(k))
		}
		key := k.Value
		fp := joinPath(path, key)
		idx, ok := fields[key]
		if !ok {
			return w.errf(k, fp, "unknown field (known fields here: %s)", strings.Join(names, ", "))
		}
		if seen[key] {
			return w.errf(k, fp, "field given twice")
		}
		seen[key] = true
		if err := w.decode(val, v.Field(idx), fp); err != nil {
			return err
		}
	}
	return nil
}

// expandEnv replaces ${NAME} (and ${NAME:-default}) in every scalar value of
// the tree; "$$" stands for a literal "$". A variable that is not set (and
// has no default) is an error naming the field and the variable.
func expandEnv(n *yaml.Node, path string, lookup func(string) (string, bool)) error {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := expandEnv(c, path, lookup); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := expandEnv(n.Content[i+1], joinPath(path, n.Content[i].Value), lookup); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := expandEnv(c, indexPath(path, i), lookup); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return nil
		}
		s, err := expandString(n.Value, lookup)
		if err != nil {
			return &fieldError{Path: path, Line: n.Line, Msg: err.Error()}
		}
		n.Value = s
		if n.ShortTag() == "!!null" {
			n.Tag = "!!str"
		}
	}
	return nil
}

func expandString(s string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 || i+1 >= len(s) {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			s = s[i+2:]
			continue
		case '{':
		default:
			b.WriteByte('$')
			s = s[i+1:]
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in value (write $$ for a literal $)")
		}
		expr := s[i+2 : i+end]
		s = s[i+end+1:]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("bad environment variable name %s in ${...}", safeQuote(name))
		}
		val, ok := lookup(name)
		if !ok || (hasDef && val == "") {
			if !hasDef {
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			val = def
		}
		b.WriteString(val)
	}
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
