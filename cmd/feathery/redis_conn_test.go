package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
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

// writeCA writes a private CA and a server certificate for 127.0.0.1 it
// signed; it returns the files.
func writeCA(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, srvKey := newKey(), newKey()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "feathery test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("redis.pem", "CERTIFICATE", leafDER), write("redis.key", "EC PRIVATE KEY", keyDER)
}

// redis.tls_ca_file: a Redis whose certificate a private CA signed is
// trusted with the CA file, and refused without it.
func TestRun_RedisTLSPrivateCA(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeCA(t, dir)
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
