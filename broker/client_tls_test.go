package broker_test

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
)

func TestNewClient_TLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := redistest.WriteTLSFiles(t, dir)
	tlsPort := redistest.FreePort(t)
	const pw = "tls-secret"
	redistest.Start(t, redistest.Options{Password: pw, Args: []string{
		"--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", cert, "--tls-key-file", key,
		"--tls-ca-cert-file", ca, "--tls-auth-clients", "no",
	}})
	url := "rediss://default:" + pw + "@127.0.0.1:" + strconv.Itoa(tlsPort) + "/0"
	c, err := broker.NewClient(broker.RedisConfig{URL: url, TLSCAFile: ca})
	if err != nil {
		t.Fatalf("connect over TLS: %v", err)
	}
	defer c.Close()
	p := newPublisher(t, c.Redis(), broker.PublisherConfig{ClientSideCaching: c.ClientSideCaching()})
	mustPublish(t, p, ev(1, "READY", `{}`))
	flush(t, p, "b", 0)
	if n := len(readStream(t, c.Redis(), "feathery:{bot:b}:events")); n != 1 {
		t.Fatalf("%d entries over TLS, want 1", n)
	}
	// Without the CA the certificate is refused; the error has no password.
	_, err = broker.NewClient(broker.RedisConfig{URL: url, DialTimeout: 2 * time.Second})
	if err == nil || strings.Contains(err.Error(), pw) {
		t.Fatalf("untrusted certificate: %v", err)
	}
	if _, err := broker.NewClient(broker.RedisConfig{URL: url, TLSCAFile: filepath.Join(dir, "missing.pem")}); err == nil || !strings.Contains(err.Error(), "redis.tls_ca_file") {
		t.Fatalf("missing CA file: %v", err)
	}
}
