package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/testkit"
)

// runAndSeeEvents runs the daemon against the fake Discord with the given
// redis section and waits until events reach the default stream, read
// through rc (a client of the same server).
func runAndSeeEvents(t *testing.T, redisSection string, rc func() int64) {
	t.Helper()
	fake := startFake(t, 1, 100)
	cfg := e2eConfig(t, fake, redisSection)
	d, err := runDaemon(t.Context(), cfg, daemonDeps{Logger: discardLogger()})
	if err != nil {
		t.Fatalf("run with redis %s: %v", redisSection, err)
	}
	defer func() {
		if err := d.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	testkit.Eventually(t, 60*time.Second, "events on the stream", func() bool { return rc() > 0 })
}

// redis.url: unix:///path works end to end.
func TestRun_RedisUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "fr") // short: a socket path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "redis.sock")
	srv := redistest.Start(t, redistest.Options{Args: []string{"--unixsocket", sock, "--unixsocketperm", "700"}})
	rc := srv.Client(t)
	runAndSeeEvents(t, `{url: "unix://`+sock+`"}`, func() int64 { return xlen(t, rc, broker.NewKeys("").Events("e2e")) })
}

// redis.tls_ca_file: a Redis whose certificate a private CA signed is
// trusted with the CA file, and refused without it.
func TestRun_RedisTLSPrivateCA(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := redistest.WriteTLSFiles(t, dir)
	tlsPort := redistest.FreePort(t)
	srv, err := redistest.Launch(redistest.Options{Dir: t.TempDir(), Args: []string{
		"--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", cert, "--tls-key-file", key,
		"--tls-ca-cert-file", ca, "--tls-auth-clients", "no",
	}})
	if err != nil {
		if strings.Contains(err.Error(), "tls-port") {
			t.Skipf("this redis-server is built without TLS: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	rc, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	url := "rediss://127.0.0.1:" + strconv.Itoa(tlsPort)

	cfg, err := parseConfig("f.yaml", []byte("redis: {url: \""+url+"\", dial_timeout: 3s}\nbots: [{name: a, token: "+testToken+"}]\n"), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broker.NewClient(redisConfig(cfg)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without tls_ca_file: %v, want a certificate error", err)
	}
	runAndSeeEvents(t, `{url: "`+url+`", tls_ca_file: "`+ca+`"}`, func() int64 { return xlen(t, rc, broker.NewKeys("").Events("e2e")) })
}
