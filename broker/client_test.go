package broker_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
)

func TestNewClient_URLWithAuthAndDB(t *testing.T) {
	const pw = "s3cret-pw"
	srv := redistest.Start(t, redistest.Options{Password: pw})
	c, err := broker.NewClient(broker.RedisConfig{URL: "redis://:" + pw + "@" + srv.Addr + "/3"})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close()
	rc := c.Redis()
	if err := rc.Do(t.Context(), rc.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// The key is in database 3.
	raw := srv.Client(t)
	cmds := raw.DoMulti(t.Context(), raw.B().Select().Index(3).Build(), raw.B().Get().Key("k").Build())
	if v, _ := cmds[1].ToString(); v != "v" {
		t.Errorf("key not in db 3: %q", v)
	}
	if !c.ClientSideCaching() {
		t.Errorf("client-side caching off against redis 7")
	}
	if strings.Contains(c.String(), pw) {
		t.Errorf("String() shows the password: %s", c.String())
	}

	// Wrong password: an error that does not show it.
	_, err = broker.NewClient(broker.RedisConfig{URL: "redis://" + srv.Addr, Password: "wrong-pw-123"})
	if err == nil || strings.Contains(err.Error(), "wrong-pw-123") {
		t.Errorf("wrong password: err %v", err)
	}
}

func TestNewClient_ConfigErrors(t *testing.T) {
	const pw = "hunter2-secret"
	cases := []struct {
		cfg  broker.RedisConfig
		want string
	}{
		{broker.RedisConfig{}, "exactly one of url, cluster and embedded"},
		{broker.RedisConfig{URL: "redis://x", Embedded: true}, "exactly one"},
		{broker.RedisConfig{URL: "http://u:" + pw + "@host"}, "redis.url: unsupported scheme"},
		{broker.RedisConfig{URL: "redis://u:" + pw + "@host:notaport"}, "redis.url"},
		{broker.RedisConfig{URL: "redis://:" + pw + "@ho st:1"}, "redis.url"},
		{broker.RedisConfig{URL: "redis://u:" + pw + "@host:6379/abc"}, "redis.url: database"},
		{broker.RedisConfig{URL: "redis://u:" + pw + "@host:6379?x=1"}, "redis.url: query"},
		{broker.RedisConfig{URL: "redis://u:" + pw + "@host:70000"}, "redis.url: port"},
		{broker.RedisConfig{ClusterAddrs: []string{"a:1", "nohostport"}}, "redis.cluster[1]"},
		{broker.RedisConfig{ClusterAddrs: []string{"a:1"}, DB: 2}, "redis.db"},
		{broker.RedisConfig{Embedded: true, EmbeddedAddr: "nope"}, "redis.embedded_addr"},
		{broker.RedisConfig{Embedded: true, TLS: true}, "redis.tls"},
		{broker.RedisConfig{URL: "redis://h", DB: -1}, "redis.db"},
		{broker.RedisConfig{URL: "redis://h", DialTimeout: time.Hour}, "redis.dial_timeout"},
		{broker.RedisConfig{URL: "redis://h", TLSCAFile: "/nonexistent/ca.pem"}, "redis.tls_ca_file: set, but TLS is off"},
		{broker.RedisConfig{URL: "rediss://h", TLSCAFile: "/nonexistent/ca.pem"}, "redis.tls_ca_file: read /nonexistent/ca.pem: no such file"},
		{broker.RedisConfig{URL: "unix://"}, "redis.url: missing socket path"},
		{broker.RedisConfig{URL: "unix:///tmp/r.sock?x=1"}, "redis.url: query parameter"},
		{broker.RedisConfig{URL: "unix:///tmp/r.sock", TLS: true}, "redis.tls: not supported over a unix socket"},
		{broker.RedisConfig{URL: "redis://h", EmbeddedAddr: "127.0.0.1:1"}, "redis.embedded_addr: only applies"},
	}
	for _, tc := range cases {
		_, err := broker.NewClient(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", tc.cfg.URL, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error shows the password: %v", err)
		}
	}
	// Unreachable: the error names the address, not the password.
	port := redistest.FreePort(t)
	_, err := broker.NewClient(broker.RedisConfig{URL: "redis://:" + pw + "@127.0.0.1:" + strconv.Itoa(port), DialTimeout: time.Second})
	if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("unreachable redis: %v", err)
	}
}

func TestNewClient_Embedded(t *testing.T) {
	c, err := broker.NewClient(broker.RedisConfig{Embedded: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.Addr()
	if !strings.HasPrefix(addr, "127.0.0.1:") || c.ClientSideCaching() {
		t.Fatalf("embedded addr %q caching %v", addr, c.ClientSideCaching())
	}
	// Another client (here: raw RESP over TCP, like redis-cli) connects.
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if line != "+PONG\r\n" {
		t.Fatalf("PING answered %q", line)
	}
	// The whole publish path runs on it.
	p := newPublisher(t, c.Redis(), broker.PublisherConfig{Bots: []broker.BotConfig{{
		Name:   "b",
		Routes: []broker.Route{{Events: []string{"MESSAGE_*"}, StreamConfig: broker.StreamConfig{Stream: "m", MaxLen: 5, Groups: []string{"g"}}}},
	}}})
	for i := int64(1); i <= 10; i++ {
		mustPublish(t, p, ev(i, "MESSAGE_CREATE", `{}`))
	}
	for i := int64(5); i <= 12; i++ { // replay
		mustPublish(t, p, ev(i, "GUILD_UPDATE", `{}`))
	}
	flush(t, p, "b", 0)
	if got := seqs(t, readStream(t, c.Redis(), "feathery:{bot:b}:m")); len(got) != 5 || got[4] != 10 {
		t.Errorf("route stream seqs %v, want the last 5 up to 10 (exact MAXLEN on miniredis)", got)
	}
	wantSeqs(t, "events", seqs(t, readStream(t, c.Redis(), "feathery:{bot:b}:events")), 11, 12)

	// With a password the embedded server requires AUTH.
	c2, err := broker.NewClient(broker.RedisConfig{Embedded: true, Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := c2.Redis().Do(ctx, c2.Redis().B().Ping().Build()).Error(); err != nil {
		t.Fatal(err)
	}
}

// redis.url unix:///path connects over the socket, with AUTH and ?db=N.
func TestNewClient_UnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "fr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "redis.sock")
	const pw = "unix-secret"
	srv := redistest.Start(t, redistest.Options{Password: pw, Args: []string{"--unixsocket", sock, "--unixsocketperm", "700"}})
	c, err := broker.NewClient(broker.RedisConfig{URL: "unix://:" + pw + "@" + sock + "?db=3"})
	if err != nil {
		t.Fatalf("connect over %s: %v", sock, err)
	}
	defer c.Close()
	if s := c.String(); s != "unix "+sock {
		t.Errorf("String() = %q", s)
	}
	rc := c.Redis()
	if err := rc.Do(t.Context(), rc.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	info, err := rc.Do(t.Context(), rc.B().ClientInfo().Build()).ToString()
	if err != nil || !strings.Contains(info, "db=3") || !strings.Contains(info, "addr=/") && !strings.Contains(info, "laddr="+sock) {
		t.Errorf("CLIENT INFO %q (%v): want a unix socket connection on db 3", info, err)
	}
	tcp := srv.Client(t)
	if err := tcp.Do(t.Context(), tcp.B().Select().Index(3).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	n, err := tcp.Do(t.Context(), tcp.B().Dbsize().Build()).AsInt64()
	if err != nil || n != 1 {
		t.Errorf("db 3 holds %d keys (%v), want the 1 written over the socket", n, err)
	}
	if _, err := broker.NewClient(broker.RedisConfig{URL: "unix://" + sock, Password: "wrong-" + pw}); err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("wrong password: %v", err)
	}
}

// A server on the Redis port that does not speak Redis (here HTTP) is
// named as such.
func TestNewClient_NotRedis(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "nope", http.StatusBadRequest)
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	_, err := broker.NewClient(broker.RedisConfig{URL: "redis://" + addr, DialTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "not a Redis server") || strings.Contains(err.Error(), "unknown message type") {
		t.Fatalf("HTTP server on the Redis port: %v, want an error saying it is not a Redis server", err)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not name %s", err, addr)
	}
}
