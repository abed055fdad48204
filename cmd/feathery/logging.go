package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lmittmann/tint"
)

// logOptions choose the log handler.
type logOptions struct {
	Level  string // debug, info, warn, error; "" = info
	Format string // auto, text, json; "" = auto
	// Secrets are strings that must never reach the output (tokens,
	// passwords); any occurrence is replaced by "[REDACTED]".
	Secrets []string
	// LevelVar, when set, is set to Level and becomes the handler's level,
	// so that it can change while running (a config reload).
	LevelVar *slog.LevelVar
}

func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

func checkLogFormat(s string) error {
	switch s {
	case "", "auto", "text", "json":
		return nil
	}
	return fmt.Errorf("unknown log format %q (want auto, text or json)", s)
}

// newLogger builds the process logger writing to w: tint when w is a
// terminal (or format is text), JSON otherwise.
func (m *Main) newLogger(w io.Writer, o logOptions) (*slog.Logger, error) {
	level, err := parseLogLevel(o.Level)
	if err != nil {
		return nil, err
	}
	if err := checkLogFormat(o.Format); err != nil {
		return nil, err
	}
	text := o.Format == "text" || ((o.Format == "" || o.Format == "auto") && m.IsTerminal(w))
	var leveler slog.Leveler = level
	if o.LevelVar != nil {
		o.LevelVar.Set(level)
		leveler = o.LevelVar
	}
	var h slog.Handler
	if text {
		h = tint.NewTextHandler(w, &tint.Options{
			Level:      leveler,
			TimeFormat: time.TimeOnly + ".000",
			NoColor:    !m.IsTerminal(w),
		})
	} else {
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: leveler})
	}
	return slog.New(newRedactHandler(h, o.Secrets)), nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	if err != nil {
		return false
	}
	return st.Mode()&os.ModeCharDevice != 0
}

// redactHandler replaces secrets in messages and attribute values before
// they reach the wrapped handler: a last line of defence so that a token
// can never be logged, whichever package logs it.
type redactHandler struct {
	next     slog.Handler
	replacer *strings.Replacer
	secrets  []string
}

func newRedactHandler(next slog.Handler, secrets []string) slog.Handler {
	var s []string
	var pairs []string
	for _, x := range secrets {
		if len(x) < 4 { // too short to search for without mangling logs
			continue
		}
		s = append(s, x)
		pairs = append(pairs, x, "[REDACTED]")
	}
	if len(s) == 0 {
		return next
	}
	return &redactHandler{next: next, replacer: strings.NewReplacer(pairs...), secrets: s}
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, h.scrub(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, nr)
}

func (h *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = h.attr(a)
	}
	return &redactHandler{next: h.next.WithAttrs(out), replacer: h.replacer, secrets: h.secrets}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{next: h.next.WithGroup(name), replacer: h.replacer, secrets: h.secrets}
}

func (h *redactHandler) contains(s string) bool {
	for _, x := range h.secrets {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

func (h *redactHandler) scrub(s string) string {
	if !h.contains(s) {
		return s
	}
	return h.replacer.Replace(s)
}

func (h *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if h.contains(v.String()) {
			return slog.String(a.Key, h.scrub(v.String()))
		}
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, x := range g {
			out[i] = h.attr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		// Errors, Stringers, byte slices and structs: compare their text.
		var s string
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		case []byte:
			s = string(x)
		default:
			s = fmt.Sprintf("%+v", x)
		}
		if h.contains(s) {
			return slog.String(a.Key, h.scrub(s))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
