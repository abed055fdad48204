package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"
)

// RedisConfig says which Redis to use: exactly one of URL, ClusterAddrs or
// Embedded. The yaml tags are the names cmd/ uses in feathery.yaml.
type RedisConfig struct {
	// URL of a standalone Redis: redis://[user[:password]@]host[:port][/db]
	// or rediss://... for TLS.
	URL string `yaml:"url"`
	// ClusterAddrs are seed addresses (host:port) of a Redis Cluster.
	ClusterAddrs []string `yaml:"cluster"`
	// Embedded runs an in-process Redis (miniredis) on a loopback TCP port;
	// its contents are lost when the process ends.
	Embedded bool `yaml:"embedded"`
	// EmbeddedAddr is the embedded Redis' listen address; default
	// "127.0.0.1:0" (a free port, see Client.Addr).
	EmbeddedAddr string `yaml:"embedded_addr"`
	// Username and Password for AUTH; they override the URL's user info.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// DB selects a database (standalone only); overrides the URL's path.
	DB int `yaml:"db"`
	// TLS connects with TLS (implied by rediss://).
	TLS bool `yaml:"tls"`
	// TLSServerName overrides the name checked in the server certificate.
	TLSServerName string `yaml:"tls_server_name"`
	// TLSCAFile is a PEM file of CA certificates to verify the server with
	// (default: the system's).
	TLSCAFile string `yaml:"tls_ca_file"`
	// TLSInsecureSkipVerify skips certificate verification (tests only).
	TLSInsecureSkipVerify bool `yaml:"tls_insecure_skip_verify"`
	// DisableClientCache turns off RESP3 client-side caching (needed for
	// servers without CLIENT TRACKING; the embedded Redis never uses it).
	DisableClientCache bool `yaml:"disable_client_cache"`
	// DialTimeout bounds connecting; default 5s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
}

// Client is a connected Redis client, plus the embedded server when
// RedisConfig.Embedded is set.
type Client struct {
	rc      rueidis.Client
	mini    *miniredis.Miniredis
	caching bool
	desc    string
}

// NewClient validates cfg and connects. Errors name the field at fault
// ("redis.url", ...) and never contain the password.
func NewClient(cfg RedisConfig) (*Client, error) {
	opt, mini, desc, err := clientOption(cfg)
	if err != nil {
		return nil, err
	}
	rc, err := rueidis.NewClient(opt)
	if err != nil {
		if mini != nil {
			mini.Close()
		}
		return nil, fmt.Errorf("connect to redis %s: %w", desc, redact(err, cfg.Password, opt.Password))
	}
	return &Client{rc: rc, mini: mini, caching: !opt.DisableCache, desc: desc}, nil
}

// clientOption turns cfg into rueidis options; for Embedded it also starts
// the server.
func clientOption(cfg RedisConfig) (rueidis.ClientOption, *miniredis.Miniredis, string, error) {
	var opt rueidis.ClientOption
	set := 0
	if cfg.URL != "" {
		set++
	}
	if len(cfg.ClusterAddrs) > 0 {
		set++
	}
	if cfg.Embedded {
		set++
	}
	if set != 1 {
		return opt, nil, "", errors.New("redis: set exactly one of url, cluster or embedded")
	}
	if cfg.DB < 0 {
		return opt, nil, "", fmt.Errorf("redis.db: %d is negative", cfg.DB)
	}
	if cfg.DialTimeout < 0 {
		return opt, nil, "", fmt.Errorf("redis.dial_timeout: %s is negative", cfg.DialTimeout)
	}
	opt.Dialer = net.Dialer{Timeout: cfg.DialTimeout}
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = 5 * time.Second
	}
	opt.DisableCache = cfg.DisableClientCache
	useTLS := cfg.TLS
	var desc string
	switch {
	case cfg.URL != "":
		u, err := url.Parse(cfg.URL)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return opt, nil, "", fmt.Errorf("redis.url: %w", redact(err, cfg.Password, passwordOf(cfg.URL)))
		}
		switch u.Scheme {
		case "redis":
		case "rediss":
			useTLS = true
		default:
			return opt, nil, "", fmt.Errorf("redis.url: scheme %q is not redis:// or rediss://", u.Scheme)
		}
		if u.Host == "" {
			return opt, nil, "", errors.New("redis.url: no host")
		}
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = "6379"
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return opt, nil, "", fmt.Errorf("redis.url: port %q is not a port number", port)
		}
		opt.InitAddress = []string{net.JoinHostPort(host, port)}
		if u.User != nil {
			opt.Username = u.User.Username()
			opt.Password, _ = u.User.Password()
		}
		if p := strings.Trim(u.Path, "/"); p != "" {
			db, err := strconv.Atoi(p)
			if err != nil || db < 0 {
				return opt, nil, "", fmt.Errorf("redis.url: database %q is not a non-negative number", p)
			}
			opt.SelectDB = db
		}
		if u.RawQuery != "" {
			return opt, nil, "", errors.New("redis.url: query parameters are not supported (use the redis.* fields)")
		}
		desc = opt.InitAddress[0]
	case len(cfg.ClusterAddrs) > 0:
		for i, a := range cfg.ClusterAddrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return opt, nil, "", fmt.Errorf("redis.cluster[%d]: %q is not host:port", i, a)
			}
		}
		if cfg.DB != 0 {
			return opt, nil, "", errors.New("redis.db: Redis Cluster has only database 0")
		}
		opt.InitAddress = append([]string(nil), cfg.ClusterAddrs...)
		desc = "cluster " + strings.Join(cfg.ClusterAddrs, ",")
	}
	if cfg.Username != "" {
		opt.Username = cfg.Username
	}
	if cfg.Password != "" {
		opt.Password = cfg.Password
	}
	if cfg.DB != 0 {
		opt.SelectDB = cfg.DB
	}
	if useTLS {
		opt.TLSConfig = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         cfg.TLSServerName,
			InsecureSkipVerify: cfg.TLSInsecureSkipVerify, //nolint:gosec // opt-in, documented as tests only
		}
		if opt.TLSConfig.ServerName == "" && len(opt.InitAddress) == 1 {
			opt.TLSConfig.ServerName, _, _ = net.SplitHostPort(opt.InitAddress[0])
		}
		if cfg.TLSCAFile != "" {
			pem, err := os.ReadFile(cfg.TLSCAFile)
			if err != nil {
				return opt, nil, "", fmt.Errorf("redis.tls_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return opt, nil, "", fmt.Errorf("redis.tls_ca_file: %s holds no PEM certificate", cfg.TLSCAFile)
			}
			opt.TLSConfig.RootCAs = pool
		}
	} else if cfg.TLSCAFile != "" || cfg.TLSServerName != "" || cfg.TLSInsecureSkipVerify {
		return opt, nil, "", errors.New("redis.tls: TLS options set but TLS is off (set tls: true or use rediss://)")
	}
	if !cfg.Embedded {
		return opt, nil, desc, nil
	}
	if useTLS {
		return opt, nil, "", errors.New("redis.tls: not supported with embedded")
	}
	addr := cfg.EmbeddedAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return opt, nil, "", fmt.Errorf("redis.embedded_addr: %q is not host:port", addr)
	}
	m := miniredis.NewMiniRedis()
	if opt.Password != "" {
		if opt.Username != "" {
			m.RequireUserAuth(opt.Username, opt.Password)
		} else {
			m.RequireAuth(opt.Password)
		}
	}
	if err := m.StartAddr(addr); err != nil {
		return opt, nil, "", fmt.Errorf("redis.embedded_addr: start embedded redis on %s: %w", addr, err)
	}
	opt.InitAddress = []string{m.Addr()}
	// miniredis has no CLIENT TRACKING and answers CLUSTER SLOTS as a
	// one-node cluster: run it as a plain single server without caching.
	opt.DisableCache = true
	opt.ForceSingleClient = true
	return opt, m, "embedded " + m.Addr(), nil
}

// passwordOf digs the password out of a URL that did not parse, so it can
// be removed from the error.
func passwordOf(raw string) string {
	rest := raw
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	userinfo := rest[:at]
	if i := strings.Index(userinfo, ":"); i >= 0 {
		return userinfo[i+1:]
	}
	return ""
}

// redactedError replaces an error whose text had a password. It does not
// unwrap: the original text must not be reachable.
type redactedError struct{ msg string }

func (e *redactedError) Error() string { return e.msg }

// redact returns err with every non-empty secret replaced by "xxxxx".
func redact(err error, secrets ...string) error {
	msg := err.Error()
	changed := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &redactedError{msg: msg}
}

// Redis is the rueidis client.
func (c *Client) Redis() rueidis.Client { return c.rc }

// Addr is the embedded Redis' address (host:port), "" when not embedded.
func (c *Client) Addr() string {
	if c.mini == nil {
		return ""
	}
	return c.mini.Addr()
}

// ClientSideCaching reports whether RESP3 client-side caching is on; set
// PublisherConfig.ClientSideCaching from it.
func (c *Client) ClientSideCaching() bool { return c.caching }

// String describes the connection without credentials.
func (c *Client) String() string { return c.desc }

// Close closes the connection and stops the embedded Redis.
func (c *Client) Close() {
	c.rc.Close()
	if c.mini != nil {
		c.mini.Close()
	}
}
