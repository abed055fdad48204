package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/feathery/feathery/broker/redistest"
	"github.com/redis/rueidis"
)

// RedisOptions tune a redis-server started by StartRedis (Binary, Port,
// Dir, AppendOnly, Password, Args, StartTimeout; see redistest.Options).
type RedisOptions = redistest.Options

// RedisServer is a redis-server child process on a loopback port: URL, PID,
// Running, Client, Stop, Kill, Restart, Close. Its methods are safe for
// concurrent use.
type RedisServer = redistest.Process

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) { return redistest.FindFreePort() }

// FreeAddr returns "127.0.0.1:<free port>".
func FreeAddr() (string, error) {
	p, err := FreePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}

// StartRedis starts redis-server and waits until it answers PING; with
// opts.Dir "", in a new temporary directory that Close removes.
func StartRedis(opts RedisOptions) (*RedisServer, error) { return redistest.Launch(opts) }

// NewRedisClient connects a rueidis client to a redis:// URL with
// client-side caching off.
func NewRedisClient(url string) (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	opt.DisableCache = true
	opt.ForceSingleClient = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect to redis: %w", err)
	}
	return c, nil
}

// RedisInfo reads one INFO section as field → value.
func RedisInfo(ctx context.Context, c rueidis.Client, section string) (map[string]string, error) {
	s, err := c.Do(ctx, c.B().Info().Section(section).Build()).ToString()
	if err != nil {
		return nil, fmt.Errorf("redis info %s: %w", section, err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out, nil
}

// UsedMemory is INFO memory's used_memory in bytes.
func UsedMemory(ctx context.Context, c rueidis.Client) (int64, error) {
	info, err := RedisInfo(ctx, c, "memory")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(info["used_memory"], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis info memory: bad used_memory %q", info["used_memory"])
	}
	return n, nil
}

// CommandStat is one command's line of INFO commandstats.
type CommandStat struct {
	Calls int64
	Usec  int64
}

// CommandStats reads INFO commandstats: per command (lower case, "|"
// subcommands kept) its calls and microseconds.
func CommandStats(ctx context.Context, c rueidis.Client) (map[string]CommandStat, error) {
	info, err := RedisInfo(ctx, c, "commandstats")
	if err != nil {
		return nil, err
	}
	out := make(map[string]CommandStat, len(info))
	for k, v := range info {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		var st CommandStat
		for _, f := range strings.Split(v, ",") {
			key, val, _ := strings.Cut(f, "=")
			switch key {
			case "calls":
				st.Calls, _ = strconv.ParseInt(val, 10, 64)
			case "usec":
				st.Usec, _ = strconv.ParseInt(val, 10, 64)
			}
		}
		out[name] = st
	}
	return out, nil
}
