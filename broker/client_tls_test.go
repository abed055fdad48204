package broker_test

import (
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
)

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "feathery test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestNewClient_TLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	tlsPort := redistest.FreePort(t)
	const pw = "tls-secret"
	redistest.Start(t, redistest.Options{Password: pw, Args: []string{
		"--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", cert, "--tls-key-file", key,
		"--tls-ca-cert-file", cert, "--tls-auth-clients", "no",
	}})
	url := "rediss://default:" + pw + "@127.0.0.1:" + strconv.Itoa(tlsPort) + "/0"
	c, err := broker.NewClient(broker.RedisConfig{URL: url, TLSCAFile: cert})
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
