// Package testpki makes throw-away certificate authorities and certificates
// for tests of blobgc's TLS and mTLS paths, in memory or as PEM files, with
// the blobgc identities of package auth (which does the issuing).
package testpki

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/blobgc/blobgc/auth"
)

// CA is a certificate authority generated for one test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	Pool *x509.CertPool // holds just Cert
	ca   *auth.CA
}

// NewCA creates a self-signed CA named name.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	ca, err := auth.NewCA(name, time.Now().Add(24*time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	return &CA{Cert: ca.Cert, Key: ca.Key, Pool: ca.Pool(), ca: ca}
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
	s := auth.CertSpec{CommonName: spec.Name, Serving: spec.Serving, URIs: spec.URIs, NotAfter: spec.NotAfter}
	if s.NotAfter.IsZero() {
		s.NotAfter = time.Now().Add(24 * time.Hour)
	} else {
		s.NotBefore = s.NotAfter.Add(-48 * time.Hour)
	}
	if spec.Serving {
		s.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
		s.DNSNames = []string{"localhost", spec.Name}
	}
	return ca.issue(tb, s)
}

func (ca *CA) issue(tb testing.TB, s auth.CertSpec) tls.Certificate {
	tb.Helper()
	c, err := ca.ca.Issue(s)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// Issue signs a certificate for name that names no identity. Every
// certificate is a client certificate; a server one is also valid for
// serving on 127.0.0.1, localhost and name (a blobgc server is both: it
// serves and dials peers).
func (ca *CA) Issue(tb testing.TB, name string, server bool) tls.Certificate {
	tb.Helper()
	return ca.IssueSpec(tb, Spec{Name: name, Serving: server})
}

// IssueURI is Issue with uri, if not empty, as the certificate's URI SAN
// (a blobgc identity such as spiffe://blobgc/server/s1).
func (ca *CA) IssueURI(tb testing.TB, name string, server bool, uri string) tls.Certificate {
	tb.Helper()
	spec := Spec{Name: name, Serving: server}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			tb.Fatal(err)
		}
		spec.URIs = []*url.URL{u}
	}
	return ca.IssueSpec(tb, spec)
}

// Server signs the certificate of raft server id in trustDomain: its
// identity spiffe://<trustDomain>/server/<id> as URI SAN, valid for serving
// on 127.0.0.1, localhost and id.
func (ca *CA) Server(tb testing.TB, trustDomain, id string) tls.Certificate {
	tb.Helper()
	return ca.issue(tb, auth.ServerSpec(trustDomain, id, []string{"localhost", "127.0.0.1"}, time.Now().Add(24*time.Hour)))
}

// Client signs the certificate of a client named name holding role in
// trustDomain.
func (ca *CA) Client(tb testing.TB, trustDomain string, role auth.Role, name string) tls.Certificate {
	tb.Helper()
	return ca.issue(tb, auth.ClientSpec(trustDomain, role, name, time.Now().Add(24*time.Hour)))
}

// Files names PEM files written by WriteFiles.
type Files struct {
	CA                    string // the CA certificate
	ServerCert, ServerKey string // server "s1" in the default trust domain
	ClientCert, ClientKey string // the admin client "client": spiffe://blobgc/admin/client
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
	for path, cert := range map[string]*x509.Certificate{f.CA: ca.Cert, f.OtherCA: other.Cert} {
		if err := auth.WriteCertPEM(path, cert); err != nil {
			tb.Fatal(err)
		}
	}
	f.ServerCert, f.ServerKey = f.ServerFiles(tb, "s1")
	WriteCert(tb, ca.Client(tb, auth.DefaultTrustDomain, auth.RoleAdmin, "client"), f.ClientCert, f.ClientKey)
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

// WriteIdentity writes a certificate of the same CA for a blobgc identity
// URI (a server one when server is set) and returns its PEM files.
func (f Files) WriteIdentity(tb testing.TB, name string, server bool, uri string) (certFile, keyFile string) {
	tb.Helper()
	certFile = filepath.Join(f.dir, name+".pem")
	keyFile = filepath.Join(f.dir, name+"-key.pem")
	WriteCert(tb, f.Authority.IssueURI(tb, name, server, uri), certFile, keyFile)
	return certFile, keyFile
}

// WriteCert writes c's certificate and key as PEM files.
func WriteCert(tb testing.TB, c tls.Certificate, certFile, keyFile string) {
	tb.Helper()
	if err := auth.WriteCertFiles(c, certFile, keyFile); err != nil {
		tb.Fatal(err)
	}
}
