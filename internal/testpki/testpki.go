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

	"github.com/blobgc/blobgc/auth"
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

// Spec describes a certificate to issue.
type Spec struct {
	Name string // common name
	// Serving makes the certificate valid for serving on 127.0.0.1,
	// localhost and Name as well as for client authentication.
	Serving  bool
	URIs     []*url.URL // URI SANs, such as blobgc identities
	NotAfter time.Time  // zero: a day from now
}

// IssueSpec signs a certificate as spec describes.
func (ca *CA) IssueSpec(tb testing.TB, spec Spec) tls.Certificate {
	tb.Helper()
	key := newKey(tb)
	tmpl := template(spec.Name)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tmpl.URIs = spec.URIs
	if !spec.NotAfter.IsZero() {
		tmpl.NotAfter = spec.NotAfter
		tmpl.NotBefore = spec.NotAfter.Add(-48 * time.Hour)
	}
	if spec.Serving {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost", spec.Name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Issue signs a certificate for name that names no identity. Every
// certificate is a client certificate; a server one is also valid for
// serving on 127.0.0.1, localhost and name (a blobgc server is both: it
// serves and dials peers).
func (ca *CA) Issue(tb testing.TB, name string, server bool) tls.Certificate {
	tb.Helper()
	return ca.IssueSpec(tb, Spec{Name: name, Serving: server})
}

// Server signs the certificate of raft server id in trustDomain: its
// identity spiffe://<trustDomain>/server/<id> as URI SAN, valid for serving
// on 127.0.0.1, localhost and id.
func (ca *CA) Server(tb testing.TB, trustDomain, id string) tls.Certificate {
	tb.Helper()
	return ca.IssueSpec(tb, Spec{Name: id, Serving: true, URIs: []*url.URL{auth.ServerIdentity(trustDomain, id).URI()}})
}

// Client signs the certificate of a client named name holding role in
// trustDomain.
func (ca *CA) Client(tb testing.TB, trustDomain string, role auth.Role, name string) tls.Certificate {
	tb.Helper()
	return ca.IssueSpec(tb, Spec{Name: name, URIs: []*url.URL{auth.ClientIdentity(trustDomain, role, name).URI()}})
}

// Files names PEM files written by WriteFiles.
type Files struct {
	CA                    string // the CA certificate
	ServerCert, ServerKey string // server "s1" in the default trust domain
	ClientCert, ClientKey string // the admin client "test" in the default trust domain
	OtherCA               string // a CA that signed none of these
	Pool                  *x509.CertPool
	Authority             *CA // the CA itself, to issue more
	dir                   string
}

// WriteFiles creates a CA, the certificate of server "s1" and of an admin
// client, and a second, unrelated CA, as PEM files in dir.
func WriteFiles(tb testing.TB, dir string) Files {
	tb.Helper()
	ca := NewCA(tb, "blobgc test CA")
	other := NewCA(tb, "unrelated CA")
	f := Files{
		CA: filepath.Join(dir, "ca.pem"), OtherCA: filepath.Join(dir, "other-ca.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem"),
		Pool: ca.Pool, Authority: ca, dir: dir,
	}
	writePEM(tb, f.CA, "CERTIFICATE", ca.Cert.Raw)
	writePEM(tb, f.OtherCA, "CERTIFICATE", other.Cert.Raw)
	f.ServerCert, f.ServerKey = f.ServerFiles(tb, "s1")
	WriteCert(tb, ca.Client(tb, auth.DefaultTrustDomain, auth.RoleAdmin, "test"), f.ClientCert, f.ClientKey)
	return f
}

// ServerFiles writes the certificate and key of server id in the default
// trust domain, signed by the files' CA, and returns their names.
func (f Files) ServerFiles(tb testing.TB, id string) (certFile, keyFile string) {
	tb.Helper()
	certFile = filepath.Join(f.dir, "server-"+id+".pem")
	keyFile = filepath.Join(f.dir, "server-"+id+"-key.pem")
	WriteCert(tb, f.Authority.Server(tb, auth.DefaultTrustDomain, id), certFile, keyFile)
	return certFile, keyFile
}

// WriteCert writes c's certificate and key as PEM files.
func WriteCert(tb testing.TB, c tls.Certificate, certFile, keyFile string) {
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
