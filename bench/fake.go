package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/feathery/feathery/gateway/discordtest"
)

// Fake is a fake Discord the benchmark drives: in-process (StartFake) or
// another process reached through its control API (DialFake).
type Fake interface {
	// URL is "http://host:port"; RESTURL is what discord.rest_url takes.
	URL() string
	RESTURL() string
	// SetRate sets the live traffic rate in dispatches per second.
	SetRate(r float64) error
	// Ledger is every session of shard with every dispatch it was sent.
	Ledger(shard int) ([]discordtest.LedgerSession, error)
	// Stats are the fake's counters.
	Stats() (discordtest.Stats, error)
	// ExactData reports whether Ledger's D are the bytes sent (true
	// in-process); the control API re-encodes them, so a remote ledger is
	// compared after JSON normalisation.
	ExactData() bool
	// Close stops an in-process fake; it does nothing for a remote one.
	Close() error
}

// LocalFake is an in-process fake Discord.
type LocalFake struct{ *discordtest.Server }

var _ Fake = (*LocalFake)(nil)

// StartFake starts an in-process fake Discord.
func StartFake(cfg discordtest.Config) (*LocalFake, error) {
	s, err := discordtest.Start(cfg)
	if err != nil {
		return nil, fmt.Errorf("start fake Discord: %w", err)
	}
	return &LocalFake{s}, nil
}

// RESTURL implements Fake.
func (f *LocalFake) RESTURL() string { return f.Server.URL() + "/api/v10" }

// SetRate implements Fake.
func (f *LocalFake) SetRate(r float64) error { f.Server.SetRate(r); return nil }

// Ledger implements Fake.
func (f *LocalFake) Ledger(shard int) ([]discordtest.LedgerSession, error) {
	return f.Server.Ledger(shard), nil
}

// Stats implements Fake.
func (f *LocalFake) Stats() (discordtest.Stats, error) { return f.Server.Stats(), nil }

// ExactData implements Fake.
func (f *LocalFake) ExactData() bool { return true }

// RemoteFake is a fake Discord in another process (`feathery fakediscord`),
// driven through its HTTP control API.
type RemoteFake struct {
	base  string
	token string
	http  *http.Client
}

var _ Fake = (*RemoteFake)(nil)

// GatewayBot is the part of GET /gateway/bot the benchmark uses.
type GatewayBot struct {
	Shards         int
	MaxConcurrency int
	Remaining      int
}

// DialFake connects to a fake Discord at addr ("host:port" or an http URL)
// and checks that it answers.
func DialFake(addr, token string) (*RemoteFake, error) {
	base := strings.TrimRight(addr, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		base = "http://" + base
	}
	if _, err := url.Parse(base); err != nil {
		return nil, fmt.Errorf("fake address: %w", err)
	}
	f := &RemoteFake{base: base, token: token, http: &http.Client{Timeout: 2 * time.Minute}}
	if _, err := f.Stats(); err != nil {
		return nil, fmt.Errorf("dial fake Discord at %s: %w", base, err)
	}
	return f, nil
}

// URL implements Fake.
func (f *RemoteFake) URL() string { return f.base }

// RESTURL implements Fake.
func (f *RemoteFake) RESTURL() string { return f.base + "/api/v10" }

// ExactData implements Fake.
func (f *RemoteFake) ExactData() bool { return false }

// Close implements Fake.
func (f *RemoteFake) Close() error { return nil }

func (f *RemoteFake) do(method, path string, out any) error {
	req, err := http.NewRequestWithContext(context.Background(), method, f.base+path, nil)
	if err != nil {
		return err
	}
	if strings.HasPrefix(path, "/api/") {
		req.Header.Set("Authorization", "Bot "+f.token)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<30))
	if err != nil {
		return fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b[:min(len(b), 300)]))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// SetRate implements Fake.
func (f *RemoteFake) SetRate(r float64) error {
	return f.do(http.MethodPost, "/_fake/rate?rate="+strconv.FormatFloat(r, 'f', -1, 64), nil)
}

// Stats implements Fake.
func (f *RemoteFake) Stats() (discordtest.Stats, error) {
	var s discordtest.Stats
	err := f.do(http.MethodGet, "/_fake/stats", &s)
	return s, err
}

// GatewayBot reads GET /api/v10/gateway/bot with the token.
func (f *RemoteFake) GatewayBot() (GatewayBot, error) {
	var r struct {
		Shards int `json:"shards"`
		Limit  struct {
			Remaining      int `json:"remaining"`
			MaxConcurrency int `json:"max_concurrency"`
		} `json:"session_start_limit"`
	}
	if err := f.do(http.MethodGet, "/api/v10/gateway/bot", &r); err != nil {
		return GatewayBot{}, err
	}
	return GatewayBot{Shards: r.Shards, MaxConcurrency: r.Limit.MaxConcurrency, Remaining: r.Limit.Remaining}, nil
}

// Ledger implements Fake (GET /_fake/ledger?shard=N&data=true).
func (f *RemoteFake) Ledger(shard int) ([]discordtest.LedgerSession, error) {
	var r struct {
		Sessions []struct {
			Session string `json:"session"`
			Shard   int    `json:"shard"`
			Shards  int    `json:"shards"`
			Entries []struct {
				Seq    int64           `json:"seq"`
				T      string          `json:"t"`
				Guild  string          `json:"guild"`
				SentAt time.Time       `json:"sent_at"`
				D      json.RawMessage `json:"d"`
				Before json.RawMessage `json:"before"`
			} `json:"entries"`
		} `json:"sessions"`
	}
	if err := f.do(http.MethodGet, "/_fake/ledger?data=true&shard="+strconv.Itoa(shard), &r); err != nil {
		return nil, err
	}
	out := make([]discordtest.LedgerSession, 0, len(r.Sessions))
	for _, s := range r.Sessions {
		ls := discordtest.LedgerSession{Session: s.Session, Shard: s.Shard, Shards: s.Shards, Entries: make([]discordtest.LedgerEntry, len(s.Entries))}
		for i, e := range s.Entries {
			ls.Entries[i] = discordtest.LedgerEntry{Seq: e.Seq, T: e.T, D: e.D, Guild: e.Guild, SentAt: e.SentAt, Before: e.Before}
		}
		out = append(out, ls)
	}
	return out, nil
}
