// Package tlsfiles loads the PEM files of TLS settings (CA bundles,
// certificate and key pairs) with errors that name the flag to fix: the
// probe's IPFIX and Kafka clients and the collector's tcps:// listeners
// share it.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
)

// CertPool reads the CA certificates of file, given with flag.
func CertPool(file, flag string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in the file", flag, file)
	}
	return pool, nil
}

// KeyPair is tls.LoadX509KeyPair with errors that say which flag's file is
// wrong; a certificate without its key, or the reverse, is an error too.
func KeyPair(certFile, keyFile, certFlag, keyFlag string) (tls.Certificate, error) {
	switch {
	case certFile == "" && keyFile != "":
		return tls.Certificate{}, fmt.Errorf("%s given without %s: the certificate and its key go together", keyFlag, certFlag)
	case keyFile == "" && certFile != "":
		return tls.Certificate{}, fmt.Errorf("%s given without %s: the certificate and its key go together", certFlag, keyFlag)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", certFlag, err)
	}
	if !hasPEM(certPEM, func(t string) bool { return t == "CERTIFICATE" }) {
		return tls.Certificate{}, fmt.Errorf("%s %s: no PEM certificate in the file", certFlag, certFile)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", keyFlag, err)
	}
	if !hasPEM(keyPEM, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") }) {
		return tls.Certificate{}, fmt.Errorf("%s %s: no PEM private key in the file", keyFlag, keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s %s and %s %s: not a matching certificate and key: %w", certFlag, certFile, keyFlag, keyFile, err)
	}
	return cert, nil
}

func hasPEM(b []byte, typ func(string) bool) bool {
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return false
		}
		if typ(blk.Type) {
			return true
		}
	}
}
