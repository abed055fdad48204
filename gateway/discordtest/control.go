package discordtest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// handleControl serves the control API under /_fake/.
func (s *Server) handleControl(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/_fake")
	switch {
	case path == "/stats":
		if !method(w, r, http.MethodGet) {
			return
		}
		writeJSON(w, http.StatusOK, s.Stats())
	case path == "/ledger":
		if !method(w, r, http.MethodGet) {
			return
		}
		shard, err := strconv.Atoi(r.URL.Query().Get("shard"))
		if err != nil || shard < 0 {
			writeError(w, http.StatusBadRequest, "ledger: query parameter shard must be a shard id (non-negative integer)")
			return
		}
		withData := r.URL.Query().Get("data") == "true"
		type entry struct {
			Event  int64           `json:"event"`
			Seq    int64           `json:"seq"`
			T      string          `json:"t"`
			Guild  string          `json:"guild,omitempty"`
			SentAt time.Time       `json:"sent_at"`
			D      json.RawMessage `json:"d,omitempty"`
			Before json.RawMessage `json:"before,omitempty"`
		}
		type sess struct {
			Session string  `json:"session"`
			Shard   int     `json:"shard"`
			Shards  int     `json:"shards"`
			Entries []entry `json:"entries"`
		}
		out := []sess{}
		for _, ls := range s.Ledger(shard) {
			ss := sess{Session: ls.Session, Shard: ls.Shard, Shards: ls.Shards, Entries: make([]entry, 0, len(ls.Entries))}
			for _, e := range ls.Entries {
				en := entry{Event: e.Event, Seq: e.Seq, T: e.T, Guild: e.Guild, SentAt: e.SentAt}
				if withData {
					en.D, en.Before = e.D, e.Before
				}
				ss.Entries = append(ss.Entries, en)
			}
			out = append(out, ss)
		}
		writeJSON(w, http.StatusOK, map[string]any{"shard": shard, "sessions": out})
	case path == "/world":
		if !method(w, r, http.MethodGet) {
			return
		}
		writeJSON(w, http.StatusOK, s.Snapshot())
	case path == "/rate":
		if !method(w, r, http.MethodPost) {
			return
		}
		rate, err := strconv.ParseFloat(r.URL.Query().Get("rate"), 64)
		if err != nil || rate < 0 {
			writeError(w, http.StatusBadRequest, "rate: query parameter rate must be a non-negative number of events per second")
			return
		}
		s.SetRate(rate)
		writeJSON(w, http.StatusOK, map[string]any{"rate": rate})
	case path == "/shards" || path == "/max_guilds_per_shard":
		if !method(w, r, http.MethodPost) {
			return
		}
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err == nil {
			if path == "/shards" {
				err = s.SetShards(n)
			} else {
				err = s.SetMaxGuildsPerShard(n)
			}
		} else {
			err = errors.New(strings.TrimPrefix(path, "/") + ": query parameter n must be a number")
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	case path == "/dispatch":
		if !method(w, r, http.MethodPost) {
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			writeError(w, http.StatusBadRequest, "dispatch: read body: "+err.Error())
			return
		}
		var req struct {
			Shard *int            `json:"shard"`
			T     string          `json:"t"`
			D     json.RawMessage `json:"d"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, "dispatch: body must be {\"shard\":N,\"t\":\"EVENT\",\"d\":{...}}: "+err.Error())
			return
		}
		if req.Shard == nil || req.T == "" || len(req.D) == 0 {
			writeError(w, http.StatusBadRequest, "dispatch: shard, t and d are required")
			return
		}
		if err := s.Dispatch(*req.Shard, req.T, req.D); err != nil {
			writeError(w, statusFor(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	case strings.HasPrefix(path, "/shards/"):
		if !method(w, r, http.MethodPost) {
			return
		}
		parts := strings.Split(strings.TrimPrefix(path, "/shards/"), "/")
		if len(parts) != 2 {
			writeError(w, http.StatusNotFound, "control: want /_fake/shards/{id}/reconnect|invalidate|close|zombie|heartbeat")
			return
		}
		shard, err := strconv.Atoi(parts[0])
		if err != nil || shard < 0 {
			writeError(w, http.StatusBadRequest, "control: shard id "+strconv.Quote(parts[0])+" is not a non-negative integer")
			return
		}
		q := r.URL.Query()
		switch parts[1] {
		case "reconnect":
			err = s.Reconnect(shard)
		case "invalidate":
			resumable := false
			if v := q.Get("resumable"); v != "" {
				resumable, err = strconv.ParseBool(v)
				if err != nil {
					writeError(w, http.StatusBadRequest, "invalidate: resumable must be true or false, got "+strconv.Quote(v))
					return
				}
			}
			err = s.Invalidate(shard, resumable)
		case "close":
			code, cerr := strconv.Atoi(q.Get("code"))
			if cerr != nil {
				writeError(w, http.StatusBadRequest, "close: query parameter code must be a close code, got "+strconv.Quote(q.Get("code")))
				return
			}
			err = s.CloseShard(shard, code)
		case "zombie":
			err = s.Zombie(shard)
		case "heartbeat":
			err = s.RequestHeartbeat(shard)
		default:
			writeError(w, http.StatusNotFound, "control: unknown shard action "+strconv.Quote(parts[1])+" (reconnect, invalidate, close, zombie, heartbeat)")
			return
		}
		if err != nil {
			writeError(w, statusFor(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	case path == "/restart":
		if !method(w, r, http.MethodPost) {
			return
		}
		// Restarting closes this request's own connection: reply first.
		writeJSON(w, http.StatusAccepted, map[string]any{"ok": true})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.Restart(); err != nil {
				s.log.Warn("restart", "err", err)
			}
		}()
	default:
		writeError(w, http.StatusNotFound, "control: no route "+r.URL.Path)
	}
}

func method(w http.ResponseWriter, r *http.Request, m string) bool {
	if r.Method != m {
		writeError(w, http.StatusMethodNotAllowed, r.URL.Path+" wants "+m+", got "+r.Method)
		return false
	}
	return true
}

func statusFor(err error) int {
	if errors.Is(err, ErrNoConnection) || strings.Contains(err.Error(), "no live session") {
		return http.StatusConflict
	}
	return http.StatusBadRequest
}
