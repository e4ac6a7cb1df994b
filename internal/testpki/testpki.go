// Package testpki makes throw-away certificate authorities and certificates
// for tests of blobgc's TLS and mTLS paths, in memory or as PEM files.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority generated for one test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	Pool *x509.CertPool // holds just Cert
}

var serial atomic.Int64

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func template(name string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

// NewCA creates a self-signed CA named name.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := template(name)
	tmpl.IsCA = true
	tmpl.KeyUsage = x509.KeyUsageCertSign
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, Pool: pool}
}

// Issue signs a certificate for name. Every certificate is a client
// certificate; a server one is also valid for serving on 127.0.0.1,
// localhost and name (a blobgc server is both: it serves and dials peers).
func (ca *CA) Issue(tb testing.TB, name string, server bool) tls.Certificate {
	tb.Helper()
	return ca.IssueURI(tb, name, server, "")
}

// IssueURI is Issue with uri, if not empty, as the certificate's URI SAN
// (a blobgc identity such as spiffe://blobgc/server/s1).
func (ca *CA) IssueURI(tb testing.TB, name string, server bool, uri string) tls.Certificate {
	tb.Helper()
	key := newKey(tb)
	tmpl := template(name)
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			tb.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost", name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Files names PEM files written by WriteFiles.
type Files struct {
	CA                    string // the CA certificate
	ServerCert, ServerKey string // for 127.0.0.1 and localhost, usable as server and as peer client
	ClientCert, ClientKey string // a client certificate of the identity spiffe://blobgc/admin/client
	OtherCA               string // a CA that signed none of these
	Pool                  *x509.CertPool
	dir                   string
	ca                    *CA
}

// WriteFiles creates a CA, a server certificate and a client certificate,
// and a second, unrelated CA, as PEM files in dir.
func WriteFiles(tb testing.TB, dir string) Files {
	tb.Helper()
	ca := NewCA(tb, "blobgc test CA")
	other := NewCA(tb, "unrelated CA")
	f := Files{
		CA: filepath.Join(dir, "ca.pem"), OtherCA: filepath.Join(dir, "other-ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem"),
		Pool: ca.Pool, dir: dir, ca: ca,
	}
	writePEM(tb, f.CA, "CERTIFICATE", ca.Cert.Raw)
	writePEM(tb, f.OtherCA, "CERTIFICATE", other.Cert.Raw)
	writeCert(tb, ca.Issue(tb, "server", true), f.ServerCert, f.ServerKey)
	writeCert(tb, ca.IssueURI(tb, "client", false, "spiffe://blobgc/admin/client"), f.ClientCert, f.ClientKey)
	return f
}

// WriteIdentity writes a certificate of the same CA for a blobgc identity
// URI (a server one when server is set) and returns its PEM files.
func (f Files) WriteIdentity(tb testing.TB, name string, server bool, uri string) (certFile, keyFile string) {
	tb.Helper()
	certFile = filepath.Join(f.dir, name+".pem")
	keyFile = filepath.Join(f.dir, name+"-key.pem")
	writeCert(tb, f.ca.IssueURI(tb, name, server, uri), certFile, keyFile)
	return certFile, keyFile
}

func writeCert(tb testing.TB, c tls.Certificate, certFile, keyFile string) {
	tb.Helper()
	kd, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		tb.Fatal(err)
	}
	writePEM(tb, certFile, "CERTIFICATE", c.Certificate[0])
	writePEM(tb, keyFile, "EC PRIVATE KEY", kd)
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}
