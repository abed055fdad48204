package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway"
)

// errReshardRefused wraps a re-shard Discord's limits or a running
// re-shard refuse (409 on the admin API).
var errReshardRefused = errors.New("re-shard refused")

// Reload re-reads the config file and puts it in force (CONFIG.md,
// "Runtime changes"). An invalid file, or one that changes what only a
// restart can change, is refused with an error and changes nothing. A bot
// step that fails (Discord refuses a new bot's token, say) is reported
// after the other steps ran; reloading again retries it.
func (d *daemon) Reload(ctx context.Context) error {
	if d.cfgPath == "" {
		return errors.New("reload: feathery was not started from a config file")
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	next, err := loadConfigFile(d.cfgPath, d.lookupEnv)
	if err != nil {
		return err
	}
	cur := d.config()
	if err := restartOnly(cur, next); err != nil {
		return err
	}
	reshards, err := d.fleetRefusesRuntimeBots(next)
	if err != nil {
		return err
	}
	if d.cache == nil {
		for i := range next.Bots {
			if cacheEnabled(&next.Bots[i]) {
				return fmt.Errorf("config %s: bots[%d].cache: no bot kept a cache at start: restart to turn the cache on", d.cfgPath, i)
			}
		}
	}
	if err := d.pub.Reconfigure(publisherConfig(next, d.redis.ClientSideCaching(), nil)); err != nil {
		return fmt.Errorf("config %s: %w", d.cfgPath, err)
	}
	if d.cache != nil {
		cc, _ := cacheConfig(next, nil)
		if err := d.cache.Reconfigure(cc); err != nil {
			return fmt.Errorf("config %s: %w", d.cfgPath, err)
		}
	}
	if d.level != nil {
		level, _ := parseLogLevel(next.Log.Level) // validated
		d.level.Set(level)
	}
	d.setConfig(next)
	if err := d.pub.EnsureGroups(ctx); err != nil {
		d.log.Warn("reload: create consumer groups (retried before each bot's next batch)", "err", err)
	}
	if f := d.getFleet(); f != nil {
		// A fleet re-shards through its plan: any node may ask.
		var errs []error
		for _, r := range reshards {
			d.log.Info("reload: asking the fleet to re-shard bot", "bot", r.bot, "to", r.shards)
			if err := f.RequestReshard(ctx, r.bot, r.shards, "config reload"); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	} else if err := d.applyBots(ctx, next); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	d.log.Info("config reloaded", "config", d.cfgPath, "bots", len(next.Bots))
	return nil
}

// restartOnly refuses a config that changes what needs a restart.
func restartOnly(cur, next *Config) error {
	for _, c := range []struct {
		path string
		a, b any
	}{
		{"redis", cur.Redis, next.Redis},
		{"admin", cur.Admin, next.Admin},
		{"discord", cur.Discord, next.Discord},
		{"identify_window", cur.IdentifyWindow, next.IdentifyWindow},
		{"log.format", cur.Log.Format, next.Log.Format},
		{"node", cur.Node, next.Node},
		{"fleet", cur.Fleet, next.Fleet},
	} {
		if !reflect.DeepEqual(c.a, c.b) {
			return fmt.Errorf("config: %s changed: restart feathery to change it (nothing was reloaded)", c.path)
		}
	}
	return nil
}

// applyBots starts, stops, replaces and re-shards bots so that the gateway
// runs next's bots.
func (d *daemon) applyBots(ctx context.Context, next *Config) error {
	want := gatewayBots(next)
	running := map[string]gateway.BotConfig{}
	for _, b := range d.mgr.Bots() {
		running[b.Name] = b
	}
	wanted := map[string]bool{}
	var errs []error
	for _, b := range want {
		wanted[b.Name] = true
		old, ok := running[b.Name]
		if !ok {
			d.log.Info("reload: starting bot", "bot", b.Name)
			if err := d.dropStaged(ctx, b.Name); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := d.mgr.AddBot(ctx, b); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		count := d.mgr.ShardCount(b.Name)
		sameBut := old
		sameBut.Shards = b.Shards
		switch {
		case b.Shards != 0 && b.Shards != count:
			d.log.Info("reload: re-sharding bot", "bot", b.Name, "from", count, "to", b.Shards)
			if err := d.mgr.Reshard(ctx, b.Name, b.Shards, &b); err != nil {
				errs = append(errs, err)
			}
		case !gateway.SameGateway(sameBut, b):
			d.log.Info("reload: restarting the shards of bot with its new settings", "bot", b.Name)
			if err := d.mgr.ReplaceBot(ctx, b); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for name := range running {
		if !wanted[name] {
			d.log.Info("reload: stopping bot", "bot", name)
			if err := d.mgr.RemoveBot(ctx, name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// errFleetRuntimeBots is why a fleet node refuses to add, remove or
// restart bots at run time: its shards are run by leases that every node
// of the fleet must agree on, which these changes do not coordinate yet. A
// changed shard count is a fleet re-shard.
var errFleetRuntimeBots = errors.New("in fleet mode bots cannot be added, removed or given new gateway settings at run time (a changed shard count re-shards the fleet): roll the new config out node by node (a rolling deploy), or run with fleet.enabled: false")

// fleetReshard is a re-shard a reloaded config asks a fleet for.
type fleetReshard struct {
	bot    string
	shards int
}

// fleetRefusesRuntimeBots refuses, in fleet mode, a config whose bots
// differ from the running ones in anything but their shard count and what
// the publisher and cache apply live (filters, routes, groups, trimming,
// cache entities); it returns the re-shards the changed counts ask for.
func (d *daemon) fleetRefusesRuntimeBots(next *Config) ([]fleetReshard, error) {
	f := d.getFleet()
	if f == nil {
		return nil, nil
	}
	running := map[string]gateway.BotConfig{}
	for _, b := range d.mgr.Bots() {
		running[b.Name] = b
	}
	want := gatewayBots(next)
	if len(want) != len(running) {
		return nil, fmt.Errorf("config %s: %w", d.cfgPath, errFleetRuntimeBots)
	}
	var out []fleetReshard
	for _, b := range want {
		old, ok := running[b.Name]
		if !ok {
			return nil, fmt.Errorf("config %s: bot %q: %w", d.cfgPath, b.Name, errFleetRuntimeBots)
		}
		count := d.mgr.ShardCount(b.Name)
		old.Shards = b.Shards
		if !gateway.SameGateway(old, b) {
			return nil, fmt.Errorf("config %s: bot %q: %w", d.cfgPath, b.Name, errFleetRuntimeBots)
		}
		if b.Shards != 0 && b.Shards != count {
			if b.ShardIDs != nil {
				return nil, fmt.Errorf("config %s: bot %q: its shard count changes but it runs static shard_ids: give each process its new list and restart it", d.cfgPath, b.Name)
			}
			out = append(out, fleetReshard{b.Name, b.Shards})
		}
	}
	return out, nil
}

// Reshard implements adminBackend: it re-shards bot live to shards.
func (d *daemon) Reshard(ctx context.Context, bot string, shards int) error {
	if f := d.getFleet(); f != nil {
		if d.mgr.ShardCount(bot) == 0 {
			return errNotFound
		}
		err := f.RequestReshard(ctx, bot, shards, "admin API")
		if errors.Is(err, broker.ErrReshardRefused) {
			return fmt.Errorf("%w: %w", errReshardRefused, err)
		}
		return err
	}
	err := d.mgr.Reshard(ctx, bot, shards, nil)
	switch {
	case errors.Is(err, gateway.ErrUnknownShard):
		return errNotFound
	case errors.Is(err, gateway.ErrResharding), errors.Is(err, gateway.ErrStartLimitExhausted):
		return fmt.Errorf("%w: %w", errReshardRefused, err)
	}
	return err
}

func (d *daemon) config() *Config {
	d.cfgMu.Lock()
	defer d.cfgMu.Unlock()
	return d.cfg
}

func (d *daemon) setConfig(c *Config) {
	d.cfgMu.Lock()
	d.cfg = c
	d.cfgMu.Unlock()
}
