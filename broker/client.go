package broker

import (
	"context"
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
	// URL of a standalone Redis: redis://[user[:password]@]host[:port][/db],
	// rediss://... for TLS, or unix://[user:password@]/path/to/redis.sock[?db=N].
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
	opt, desc, err := cfg.options()
	if err != nil {
		return nil, InField("redis", err)
	}
	var mini *miniredis.Miniredis
	if cfg.Embedded {
		if mini, err = startEmbedded(&opt, cfg.EmbeddedAddr); err != nil {
			return nil, InField("redis.embedded_addr", err)
		}
		desc = "embedded " + mini.Addr()
	}
	rc, err := rueidis.NewClient(opt)
	if err != nil {
		if mini != nil {
			mini.Close()
		}
		return nil, fmt.Errorf("connect to redis %s: %w", desc, explainConnect(redact(err, cfg.Password, opt.Password), opt.TLSConfig != nil))
	}
	return &Client{rc: rc, mini: mini, caching: !opt.DisableCache, desc: desc}, nil
}

// errNotRedis says the server did not answer in Redis' protocol.
var errNotRedis = errors.New("not a Redis server")

// explainConnect turns rueidis' protocol errors into what they mean.
func explainConnect(err error, useTLS bool) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "received unknown message type"):
		if useTLS {
			return fmt.Errorf("%w: its reply is not in Redis' protocol", errNotRedis)
		}
		return fmt.Errorf("%w: its reply is not in Redis' protocol (a Redis that wants TLS needs rediss:// or redis.tls)", errNotRedis)
	case useTLS && strings.Contains(msg, "first record does not look like a TLS handshake"):
		return fmt.Errorf("the server does not speak TLS (use redis:// without tls): %w", err)
	}
	return err
}

// Upper bounds of RedisConfig.
const (
	maxDialTimeout = time.Minute
	maxDB          = 1 << 16
)

// Validate checks cfg without connecting (it reads TLSCAFile); NewClient
// runs it first. Errors are FieldErrors in the field names of feathery.yaml
// under redis, without the password.
func (cfg RedisConfig) Validate() error {
	_, _, err := cfg.options()
	return err
}

// options turns cfg into rueidis options and a description of the server.
func (cfg RedisConfig) options() (rueidis.ClientOption, string, error) {
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
		return opt, "", fieldErr("", "set exactly one of url, cluster and embedded")
	}
	if cfg.DB < 0 || cfg.DB > maxDB {
		return opt, "", fieldErr("db", "%d is not a database number (0-%d)", cfg.DB, maxDB)
	}
	if cfg.DialTimeout < 0 || cfg.DialTimeout > maxDialTimeout {
		return opt, "", fieldErr("dial_timeout", "%s is not between 0 and %s", cfg.DialTimeout, maxDialTimeout)
	}
	opt.Dialer = net.Dialer{Timeout: cfg.DialTimeout}
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = 5 * time.Second
	}
	opt.DisableCache = cfg.DisableClientCache
	useTLS := cfg.TLS
	unix := false
	var desc string
	switch {
	case cfg.URL != "":
		u, err := url.Parse(cfg.URL)
		if err != nil {
			// Never echo the URL: it may hold a password.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return opt, "", InField("url", fmt.Errorf("not a valid URL: %w", redact(err, cfg.Password, passwordOf(cfg.URL))))
		}
		if u.User != nil {
			opt.Username = u.User.Username()
			opt.Password, _ = u.User.Password()
		}
		switch u.Scheme {
		case "redis", "rediss":
			useTLS = useTLS || u.Scheme == "rediss"
			if u.Hostname() == "" {
				return opt, "", fieldErr("url", "missing host (want redis://host:port/db)")
			}
			port := u.Port()
			if port == "" {
				port = "6379"
			}
			if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
				return opt, "", fieldErr("url", "port %s is not a port number", quoteShort(port))
			}
			if !strings.HasPrefix(u.Host, "[") && strings.Count(u.Host, ":") > 1 {
				return opt, "", fieldErr("url", "host and port: %s is not host:port (write an IPv6 address in brackets)", quoteShort(u.Host))
			}
			opt.InitAddress = []string{net.JoinHostPort(u.Hostname(), port)}
			if p := strings.Trim(u.Path, "/"); p != "" {
				db, err := strconv.Atoi(p)
				if err != nil || db < 0 || db > maxDB {
					return opt, "", fieldErr("url", "database %s in the path is not a number (0-%d)", quoteShort(p), maxDB)
				}
				opt.SelectDB = db
			}
			if u.RawQuery != "" {
				return opt, "", fieldErr("url", "query parameters are not supported (use the redis.* fields)")
			}
			desc = opt.InitAddress[0]
		case "unix":
			// unix:///path/to/redis.sock, unix://user:pass@/path?db=N
			unix = true
			if u.Path == "" || (u.Host != "" && u.Host != "localhost") {
				return opt, "", fieldErr("url", "missing socket path (want unix:///path/to/redis.sock)")
			}
			q, err := url.ParseQuery(u.RawQuery)
			if err != nil {
				return opt, "", fieldErr("url", "bad query: %v", err)
			}
			for k := range q {
				if k != "db" {
					return opt, "", fieldErr("url", "query parameter %s is not supported (only db)", quoteShort(k))
				}
			}
			if d := q.Get("db"); d != "" {
				db, err := strconv.Atoi(d)
				if err != nil || db < 0 || db > maxDB {
					return opt, "", fieldErr("url", "db=%s is not a database number (0-%d)", quoteShort(d), maxDB)
				}
				opt.SelectDB = db
			}
			opt.InitAddress = []string{u.Path}
			// One socket, one server: no cluster discovery over a path.
			opt.ForceSingleClient = true
			opt.DialCtxFn = func(ctx context.Context, path string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
				return d.DialContext(ctx, "unix", path)
			}
			desc = "unix " + u.Path
		default:
			return opt, "", fieldErr("url", "unsupported scheme %s (want redis://, rediss:// or unix://)", quoteShort(u.Scheme))
		}
	case len(cfg.ClusterAddrs) > 0:
		for i, a := range cfg.ClusterAddrs {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				return opt, "", fieldErr("cluster["+strconv.Itoa(i)+"]", "want host:port, got %s", quoteShort(a))
			}
		}
		if cfg.DB != 0 {
			return opt, "", fieldErr("db", "Redis Cluster has only database 0")
		}
		opt.InitAddress = append([]string(nil), cfg.ClusterAddrs...)
		desc = "cluster " + strings.Join(cfg.ClusterAddrs, ",")
	}
	if cfg.EmbeddedAddr != "" {
		if !cfg.Embedded {
			return opt, "", fieldErr("embedded_addr", "only applies to the embedded Redis")
		}
		if _, _, err := net.SplitHostPort(cfg.EmbeddedAddr); err != nil {
			return opt, "", fieldErr("embedded_addr", "want host:port (e.g. 127.0.0.1:6379), got %s", quoteShort(cfg.EmbeddedAddr))
		}
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
	if !useTLS {
		switch {
		case cfg.TLSCAFile != "":
			return opt, "", fieldErr("tls_ca_file", "set, but TLS is off (set tls: true or use rediss://)")
		case cfg.TLSServerName != "":
			return opt, "", fieldErr("tls_server_name", "set, but TLS is off (set tls: true or use rediss://)")
		case cfg.TLSInsecureSkipVerify:
			return opt, "", fieldErr("tls_insecure_skip_verify", "set, but TLS is off (set tls: true or use rediss://)")
		}
		return opt, desc, nil
	}
	if cfg.Embedded {
		return opt, "", fieldErr("tls", "not supported with the embedded Redis")
	}
	if unix {
		return opt, "", fieldErr("tls", "not supported over a unix socket")
	}
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
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return opt, "", fieldErr("tls_ca_file", "read %s: %w", cfg.TLSCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return opt, "", fieldErr("tls_ca_file", "%s holds no PEM certificate", cfg.TLSCAFile)
		}
		opt.TLSConfig.RootCAs = pool
	}
	return opt, desc, nil
}

// startEmbedded starts the embedded Redis on addr and points opt at it.
func startEmbedded(opt *rueidis.ClientOption, addr string) (*miniredis.Miniredis, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
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
		return nil, fmt.Errorf("start embedded redis on %s: %w", addr, err)
	}
	opt.InitAddress = []string{m.Addr()}
	// miniredis has no CLIENT TRACKING and answers CLUSTER SLOTS as a
	// one-node cluster: run it as a plain single server without caching.
	opt.DisableCache = true
	opt.ForceSingleClient = true
	return m, nil
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
