package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// nodePersistence is what one Redis node keeps across a restart.
type nodePersistence struct {
	Addr string
	// AOF is on (INFO persistence aof_enabled, or CONFIG GET appendonly).
	AOF bool
	// Fsync is appendfsync ("always", "everysec", "no"); "" when CONFIG
	// GET is refused.
	Fsync string
	// Save is the RDB save schedule ("" = none); Unknown when CONFIG GET
	// is refused.
	Save      string
	ConfigErr error // CONFIG GET failed (disabled on managed Redis)
	// Role is "master" or "slave"; Replicas the connected replicas.
	Role     string
	Replicas int
}

// errPersistence is wrapped by the error returned at start when redis.require_persistence
// is set and a node does not keep AOF (or it cannot be checked).
var errPersistence = errors.New("redis persistence required")

// checkPersistence reads every node's persistence settings (INFO, then
// CONFIG GET where allowed), logs what the delivery promise then does not
// cover, and, with require set, refuses a node without AOF.
func checkPersistence(ctx context.Context, c rueidis.Client, require bool, log *slog.Logger) error {
	nodes := c.Nodes()
	addrs := make([]string, 0, len(nodes))
	for a := range nodes {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, addr := range addrs {
		np, err := readPersistence(ctx, nodes[addr])
		np.Addr = addr
		if err != nil {
			if require {
				return fmt.Errorf("%w: check redis %s: %w (set redis.require_persistence: false if the provider hides INFO)", errPersistence, addr, err)
			}
			log.Warn("could not check the persistence of redis; the delivery promise needs AOF (appendfsync everysec or always)", "redis", addr, "err", err)
			continue
		}
		if require && !np.AOF {
			return fmt.Errorf("%w: redis %s runs without AOF (appendonly no): a restart loses checkpoints and streams; turn appendonly on (appendfsync everysec or always) or set redis.require_persistence: false", errPersistence, addr)
		}
		reportPersistence(np, log)
	}
	return nil
}

// readPersistence reads one node's settings. INFO is needed; CONFIG GET is
// optional (many managed services refuse it).
func readPersistence(ctx context.Context, c rueidis.Client) (nodePersistence, error) {
	var np nodePersistence
	info, err := c.Do(ctx, c.B().Info().Section("persistence").Section("replication").Build()).ToString()
	if err != nil {
		return np, fmt.Errorf("INFO persistence: %w", err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok {
			fields[k] = v
		}
	}
	aof, ok := fields["aof_enabled"]
	if !ok {
		return np, errors.New("INFO persistence has no aof_enabled: not a Redis server this check knows")
	}
	np.AOF = aof == "1"
	np.Role = fields["role"]
	np.Replicas, _ = strconv.Atoi(fields["connected_slaves"])
	cfg, err := c.Do(ctx, c.B().ConfigGet().Parameter("appendonly", "appendfsync", "save").Build()).AsStrMap()
	if err != nil {
		np.ConfigErr = err
		return np, nil
	}
	np.Fsync = cfg["appendfsync"]
	np.Save = strings.TrimSpace(cfg["save"])
	return np, nil
}

// reportPersistence logs what one node's settings mean for the delivery
// promise.
func reportPersistence(np nodePersistence, log *slog.Logger) {
	log = log.With("redis", np.Addr)
	switch {
	case np.Role == "slave":
		log.Warn("redis is a replica: writes will fail until it is promoted")
	case np.Replicas == 0:
		log.Info("redis has no connected replica: losing its host loses what it holds")
	default:
		log.Info("redis has replicas: a failover to one that missed the last writes rewinds checkpoints; feathery detects it and resumes from the stored checkpoint", "replicas", np.Replicas)
	}
	if np.ConfigErr != nil {
		log.Warn("could not read appendfsync and save (CONFIG GET refused)", "aof", np.AOF, "err", np.ConfigErr)
	}
	switch {
	case !np.AOF && np.Save == "" && np.ConfigErr == nil:
		log.Warn("redis keeps nothing across a restart (no AOF, no RDB snapshots): a restart loses checkpoints, streams and cache; " +
			"feathery reports it while running, but if feathery restarts too, the sessions start anew without a gap event")
	case !np.AOF:
		log.Warn("redis runs without AOF: a restart rewinds to the last RDB snapshot; feathery resumes from the rewound checkpoints "+
			"while Discord can replay, else writes a gap event; use appendonly yes (appendfsync everysec or always)", "save", np.Save)
	case np.Fsync == "no":
		log.Warn("redis AOF with appendfsync no: a host crash can lose tens of seconds of writes; feathery resumes from the rewound checkpoints while Discord can replay")
	case np.Fsync == "everysec":
		log.Info("redis AOF with appendfsync everysec: a host crash can lose about a second of writes, which feathery has Discord replay")
	case np.Fsync == "always":
		log.Info("redis AOF with appendfsync always: acknowledged writes survive a host crash")
	}
}
