package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"time"
)

// A small certificate authority for blobgc's identities: what
// `blobgc tls init` uses to make a cluster's CA, server and client
// certificates, and what tests issue theirs with. Keys are ECDSA P-256.

// CA is a certificate authority: its certificate and signing key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// CertSpec describes a certificate to issue. Every certificate is valid for
// client authentication; Serving adds server authentication (a blobgc server
// both serves and dials its peers) for the DNS names and IPs given.
type CertSpec struct {
	CommonName string
	Serving    bool
	DNSNames   []string
	IPs        []net.IP
	URIs       []*url.URL // the identity, see FromCertificate
	NotBefore  time.Time  // zero: an hour ago (tolerates clock skew)
	NotAfter   time.Time  // required
}

// NewCA makes a self-signed CA named name, valid until notAfter.
func NewCA(name string, notAfter time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl, err := template(name, time.Time{}, notAfter)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

func template(name string, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Hour)
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
	}, nil
}

// Pool returns a pool holding just the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue signs a certificate as spec describes.
func (ca *CA) Issue(spec CertSpec) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl, err := template(spec.CommonName, spec.NotBefore, spec.NotAfter)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tmpl.URIs = spec.URIs
	if spec.Serving {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.DNSNames, tmpl.IPAddresses = spec.DNSNames, spec.IPs
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ServerSpec is the certificate of raft server id in trustDomain: its server
// identity, serving for hosts (DNS names or IP addresses) and id itself.
func ServerSpec(trustDomain, id string, hosts []string, notAfter time.Time) CertSpec {
	spec := CertSpec{CommonName: id, Serving: true, URIs: []*url.URL{ServerIdentity(trustDomain, id).URI()}, NotAfter: notAfter}
	for _, h := range append([]string{id}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			spec.IPs = append(spec.IPs, ip)
		} else {
			spec.DNSNames = append(spec.DNSNames, h)
		}
	}
	return spec
}

// ClientSpec is the certificate of client name holding role in trustDomain.
func ClientSpec(trustDomain string, role Role, name string, notAfter time.Time) CertSpec {
	return CertSpec{CommonName: name, URIs: []*url.URL{ClientIdentity(trustDomain, role, name).URI()}, NotAfter: notAfter}
}

// WriteCertFiles writes c's certificate and key as PEM files; the key is
// readable by its owner only.
func WriteCertFiles(c tls.Certificate, certFile, keyFile string) error {
	key, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return fmt.Errorf("auth: key of type %T, want ECDSA", c.PrivateKey)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(certFile, "CERTIFICATE", c.Certificate[0], 0o644); err != nil {
		return err
	}
	return writePEM(keyFile, "EC PRIVATE KEY", kd, 0o600)
}

// WriteCAFiles writes the CA's certificate and key as PEM files.
func (ca *CA) WriteCAFiles(certFile, keyFile string) error {
	return WriteCertFiles(tls.Certificate{Certificate: [][]byte{ca.Cert.Raw}, PrivateKey: ca.Key}, certFile, keyFile)
}

// LoadCA reads a CA written by WriteCAFiles.
func LoadCA(certFile, keyFile string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, errors.New("auth: " + certFile + " is not an ECDSA CA certificate")
	}
	return &CA{Cert: cert, Key: key}, nil
}

// WriteCertPEM writes a certificate as a PEM file.
func WriteCertPEM(path string, cert *x509.Certificate) error {
	return writePEM(path, "CERTIFICATE", cert.Raw, 0o644)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}
