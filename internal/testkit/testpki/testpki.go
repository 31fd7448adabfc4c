// Package testpki makes throwaway certificate authorities for tests: a CA
// with a server certificate (127.0.0.1, collector.test) and a client
// certificate, plus an unrelated second CA with its own pair, as PEM files.
package testpki

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
	"sync/atomic"
	"testing"
	"time"
)

// PKI is a throwaway CA made for one test, with a collector (server)
// certificate for 127.0.0.1 and collector.test and an exporter (client)
// certificate, plus a second, unrelated CA with its own pair. Every file
// is PEM in a temporary directory.
type PKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey                          string
	OtherCA, OtherServerCert, OtherServerKey, OtherClientCert, OtherClientKey string
}

// New writes a PKI into a test directory.
func New(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	p := &PKI{}
	p.CA, p.ServerCert, p.ServerKey, p.ClientCert, p.ClientKey = makeCA(t, dir, "ca")
	p.OtherCA, p.OtherServerCert, p.OtherServerKey, p.OtherClientCert, p.OtherClientKey = makeCA(t, dir, "other")
	return p
}

var serial atomic.Int64 // certificate serial numbers

// makeCA writes a CA and a server and a client certificate it signed.
func makeCA(t testing.TB, dir, name string) (ca, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: "xdpflow test CA " + name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	ca = writePEM(t, dir, name+"-ca.pem", "CERTIFICATE", caDER)
	leaf := func(role string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name + " " + role},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
			tmpl.DNSNames = []string{"collector.test"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, name+"-"+role+".pem", "CERTIFICATE", der),
			writePEM(t, dir, name+"-"+role+"-key.pem", "PRIVATE KEY", keyDER)
	}
	serverCert, serverKey = leaf("server", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey = leaf("client", x509.ExtKeyUsageClientAuth)
	return ca, serverCert, serverKey, clientCert, clientKey
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
