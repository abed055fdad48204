package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
)

// RedisBenchmarkOptions configure one redis-benchmark run of a pipelined
// XADD.
type RedisBenchmarkOptions struct {
	// Binary is the redis-benchmark executable; default "redis-benchmark".
	Binary string
	// URL is the Redis to run against (redis://[user:pass@]host:port).
	URL string
	// Stream is the stream key written; default "feathery-bench:xadd".
	Stream string
	// Fields are the field/value pairs of each entry, e.g.
	// {"d", payload}.
	Fields []string
	// Requests (-n), Pipeline (-P) and Clients (-c); defaults 200000, 16, 50.
	Requests, Pipeline, Clients int
}

// RedisBenchmarkResult is what one run measured.
type RedisBenchmarkResult struct {
	// Command is the command line, with long values shortened as
	// "<N bytes>".
	Command string `json:"command"`
	// OpsPerSecond is redis-benchmark's requests per second.
	OpsPerSecond float64 `json:"ops_per_second"`
	// P50 and P99 are its latency percentiles in milliseconds.
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	// Runs are the rates of every run when several were made (the figures
	// above are then the median run's).
	Runs []float64 `json:"runs,omitempty"`
	// RedisCPUMicrosPerOp is redis-server's user+system CPU over the run
	// per XADD, in microseconds (set by the caller that knows the server's
	// pid; 0 = not measured). This is the floor feathery's Redis CPU per
	// event is compared with.
	RedisCPUMicrosPerOp float64 `json:"redis_cpu_us_per_op,omitempty"`
	// Serial is a run of the same XADD one at a time (-P 1), for scale.
	Serial *RedisBenchmarkResult `json:"serial,omitempty"`
}

// RunRedisBenchmark runs redis-benchmark --csv for XADD <Stream> * <Fields>
// and deletes the stream afterwards (deleting needs the caller's client; the
// stream is left when it cannot be reached, so use a disposable key).
func RunRedisBenchmark(ctx context.Context, opts RedisBenchmarkOptions) (RedisBenchmarkResult, error) {
	var res RedisBenchmarkResult
	if opts.Binary == "" {
		opts.Binary = "redis-benchmark"
	}
	if opts.Stream == "" {
		opts.Stream = "feathery-bench:xadd"
	}
	if opts.Requests <= 0 {
		opts.Requests = 200000
	}
	if opts.Pipeline <= 0 {
		opts.Pipeline = 16
	}
	if opts.Clients <= 0 {
		opts.Clients = 50
	}
	if len(opts.Fields) == 0 || len(opts.Fields)%2 != 0 {
		return res, fmt.Errorf("redis-benchmark: want field/value pairs, got %d values", len(opts.Fields))
	}
	u, err := url.Parse(opts.URL)
	if err != nil || u.Host == "" {
		return res, fmt.Errorf("redis-benchmark: redis url is not host:port")
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "6379"
	}
	args := []string{"-h", host, "-p", port}
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			args = append(args, "-a", pw)
			if name := u.User.Username(); name != "" {
				args = append(args, "--user", name)
			}
		}
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		args = append(args, "--dbnum", db)
	}
	args = append(args, "-n", strconv.Itoa(opts.Requests), "-P", strconv.Itoa(opts.Pipeline), "-c", strconv.Itoa(opts.Clients), "--csv",
		"XADD", opts.Stream, "*")
	args = append(args, opts.Fields...)

	shown := make([]string, 0, len(args)+1)
	shown = append(shown, "redis-benchmark")
	for i, a := range args {
		switch {
		case i > 0 && args[i-1] == "-a":
			shown = append(shown, "***")
		case len(a) > 40:
			shown = append(shown, fmt.Sprintf("<%d bytes>", len(a)))
		default:
			shown = append(shown, a)
		}
	}
	res.Command = strings.Join(shown, " ")

	cmd := exec.CommandContext(ctx, opts.Binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("run redis-benchmark: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	recs, err := csv.NewReader(bytes.NewReader(stdout.Bytes())).ReadAll()
	if err != nil || len(recs) < 2 || len(recs[len(recs)-1]) < 7 {
		return res, fmt.Errorf("redis-benchmark: unexpected output %q", truncate(stdout.String(), 300))
	}
	last := recs[len(recs)-1]
	res.OpsPerSecond, err = strconv.ParseFloat(last[1], 64)
	if err != nil {
		return res, fmt.Errorf("redis-benchmark: bad rps %q", last[1])
	}
	res.P50, _ = strconv.ParseFloat(last[4], 64)
	res.P99, _ = strconv.ParseFloat(last[6], 64)
	return res, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
