package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/consumers"
)

// errTailDone ends a tail after --count entries.
var errTailDone = errors.New("count reached")

func (m *Main) runTail(ctx context.Context, g globalFlags, args []string) error {
	fs := m.newFlagSet("tail", "[-c feathery.yaml | --redis URL] [--stream S | --bot B | --control] [--json] [--group G [--consumer C]] [--from 0|$]", &g)
	cfgPath := fs.String("c", "", "config file: its redis section and key prefix are used")
	redisURL := fs.String("redis", "", "Redis URL (default redis://127.0.0.1:6379, or the config's)")
	prefix := fs.String("prefix", "", "key prefix (default the config's, else feathery)")
	stream := fs.String("stream", "", "stream: a full key, or a route stream name of --bot")
	bot := fs.String("bot", "", "bot whose stream to read (default: the config's only bot)")
	control := fs.Bool("control", false, "read feathery's control stream")
	asJSON := fs.Bool("json", false, "print one JSON object per entry")
	group := fs.String("group", "", "read through this consumer group, acknowledging each entry")
	consumer := fs.String("consumer", "", "consumer name within --group (default host-pid)")
	from := fs.String("from", "", `where to start: "$" (new entries only; the default) or "0" (the whole stream) or an entry id`)
	count := fs.Int("count", 0, "exit after this many entries (0 = run until Ctrl-C)")
	if err := parseFlags(fs, args); err != nil {
		return helpOK(err)
	}

	rc := broker.RedisConfig{URL: "redis://127.0.0.1:6379"}
	keyPrefix := *prefix
	if *cfgPath != "" {
		cfg, err := loadConfigFile(*cfgPath, m.LookupEnv)
		if err != nil {
			return err
		}
		rc = redisConfig(cfg)
		if rc.Embedded {
			if portOf(cfg.Redis.EmbeddedAddr) == "0" {
				return fmt.Errorf("the config's Redis is embedded on a random port: pass --redis redis://ADDR with the address feathery printed")
			}
			rc = broker.RedisConfig{URL: "redis://" + cfg.Redis.EmbeddedAddr, Username: cfg.Redis.Username, Password: cfg.Redis.Password}
		}
		if keyPrefix == "" {
			keyPrefix = cfg.Redis.Prefix
		}
		if *bot == "" && len(cfg.Bots) == 1 {
			*bot = cfg.Bots[0].Name
		}
	}
	if *redisURL != "" {
		rc = broker.RedisConfig{URL: *redisURL}
	}
	// Reading streams needs no client-side caching, and without it tail
	// also works against servers that lack CLIENT TRACKING (the embedded
	// Redis of another feathery).
	rc.DisableClientCache = true
	keys := broker.NewKeys(keyPrefix)
	var key string
	switch {
	case *control:
		key = keys.Control()
	case strings.Contains(*stream, ":"):
		key = *stream
	case *bot == "":
		return fmt.Errorf("say which stream: --stream KEY, --bot NAME, --control or -c with a one-bot config")
	case *stream != "":
		key = keys.Stream(*bot, *stream)
	default:
		key = keys.Events(*bot)
	}
	if *group == "" && *consumer != "" {
		return fmt.Errorf("--consumer needs --group")
	}

	client, err := broker.NewClient(rc)
	if err != nil {
		return err
	}
	defer client.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &entryPrinter{w: bufio.NewWriter(m.Stdout), json: *asJSON, limit: *count}
	defer p.w.Flush()
	fmt.Fprintf(m.Stderr, "tailing %s\n", key)

	if *group == "" {
		start := *from
		if start == "" {
			start = "$"
		}
		err := consumers.Tail(ctx, client.Redis(), key, start, func(e consumers.Entry) error {
			return p.print(e.Stream, e.ID, e.Fields)
		})
		if errors.Is(err, errTailDone) {
			return nil
		}
		return err
	}

	start := *from
	if start == "" {
		start = "$"
	}
	gr, err := consumers.NewGroupReader(client.Redis(), consumers.GroupConfig{
		Streams:  []string{key},
		Group:    *group,
		Consumer: *consumer,
		StartID:  start,
		Block:    time.Second,
	})
	if err != nil {
		return err
	}
	err = gr.Run(ctx, func(_ context.Context, msg consumers.Message) error {
		if err := p.printMessage(msg); err != nil {
			if errors.Is(err, errTailDone) {
				cancel() // the entry is acknowledged; Run returns once it is
				return nil
			}
			return err
		}
		return nil
	})
	return err
}

// entryPrinter prints entries as text lines or JSON lines, and counts them.
type entryPrinter struct {
	mu    sync.Mutex
	w     *bufio.Writer
	json  bool
	limit int
	n     int
}

// print writes one raw entry.
func (p *entryPrinter) print(stream, id string, fields map[string]string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.limit > 0 && p.n >= p.limit {
		return errTailDone
	}
	if p.json {
		obj := map[string]any{"stream": stream, "id": id}
		for k, v := range fields {
			switch {
			case (k == consumers.FieldData || k == consumers.FieldBefore) && json.Valid([]byte(v)):
				obj[k] = json.RawMessage(v)
			case k == consumers.FieldShard || k == consumers.FieldSeq || k == consumers.FieldAt || k == consumers.FieldVersion:
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					obj[k] = n
					continue
				}
				obj[k] = v
			default:
				obj[k] = v
			}
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("encode entry %s: %w", id, err)
		}
		p.w.Write(b)
		p.w.WriteByte('\n')
	} else {
		p.w.WriteString(textLine(id, fields))
		p.w.WriteByte('\n')
	}
	p.n++
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if p.limit > 0 && p.n >= p.limit {
		return errTailDone
	}
	return nil
}

// printMessage writes an entry read through a group.
func (p *entryPrinter) printMessage(msg consumers.Message) error {
	f := map[string]string{
		consumers.FieldVersion: strconv.Itoa(msg.V),
		consumers.FieldType:    msg.T,
		consumers.FieldData:    string(msg.D),
		consumers.FieldBot:     msg.Bot,
		consumers.FieldShard:   strconv.Itoa(msg.Shard),
		consumers.FieldSession: msg.Session,
		consumers.FieldSeq:     strconv.FormatInt(msg.Seq, 10),
		consumers.FieldAt:      strconv.FormatInt(msg.At.UnixMilli(), 10),
	}
	if msg.Guild != "" {
		f[consumers.FieldGuild] = msg.Guild
	}
	if msg.Before != nil {
		f[consumers.FieldBefore] = string(msg.Before)
	}
	return p.print(msg.Stream, msg.ID, f)
}

// textLine formats an entry for people: id, event name, where it came
// from, and the start of its data.
func textLine(id string, f map[string]string) string {
	var b strings.Builder
	b.WriteString(id)
	if t, ok := f[consumers.FieldType]; ok {
		b.WriteString(" " + t)
		for _, k := range []string{consumers.FieldBot, consumers.FieldShard, consumers.FieldSeq, consumers.FieldGuild} {
			if v, ok := f[k]; ok && v != "" {
				b.WriteString(" " + k + "=" + v)
			}
		}
		if _, ok := f[consumers.FieldBefore]; ok {
			b.WriteString(" +before")
		}
		if d, ok := f[consumers.FieldData]; ok {
			b.WriteString(" " + truncate(d, 160))
		}
		return b.String()
	}
	// Not an event entry (control or dead-letter stream): every field.
	ks := make([]string, 0, len(f))
	for k := range f {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		b.WriteString(" " + k + "=" + truncate(f[k], 160))
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
