package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// reloadableTLS is the server's TLS material from TLSFiles. The tls.Configs
// built from it read the current certificate and CA at every handshake, so
// Reload makes running servers serve and dial with new files; connections
// already open keep the certificates they were made with.
type reloadableTLS struct {
	files TLSFiles
	cur   atomic.Pointer[tlsMaterial]
}

type tlsMaterial struct {
	cert tls.Certificate
	pool *x509.CertPool
}

// loadTLS loads files; nil for plaintext (no files).
func loadTLS(files TLSFiles) (*reloadableTLS, error) {
	if files.CertFile == "" {
		return nil, nil
	}
	r := &reloadableTLS{files: files}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// reload reads the files again; on error the material in use stays.
func (r *reloadableTLS) reload() error {
	t := r.files
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return fmt.Errorf("cluster: load TLS key pair: %w", err)
	}
	caPEM, err := os.ReadFile(t.CAFile)
	if err != nil {
		return fmt.Errorf("cluster: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("cluster: CA file %s holds no PEM certificate", t.CAFile)
	}
	r.cur.Store(&tlsMaterial{cert: cert, pool: pool})
	return nil
}

// serverConfig is the listener's TLS: API clients may connect without a
// certificate; the raft service refuses callers that are not peers
// (transport.RequirePeerCert with authorizePeer).
func (r *reloadableTLS) serverConfig() *tls.Config {
	base := &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := r.cur.Load()
		return &tls.Config{
			Certificates: []tls.Certificate{m.cert},
			ClientCAs:    m.pool,
			ClientAuth:   base.ClientAuth,
			MinVersion:   base.MinVersion,
			NextProtos:   []string{"h2"}, // what gRPC's credentials set on their clone of base
		}, nil
	}
	return base
}

// clientConfig is the TLS for dialing peers and the leader. The CA may
// change on reload, so the server's chain is verified here against the
// current one instead of a fixed RootCAs.
func (r *reloadableTLS) clientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &r.cur.Load().cert, nil
		},
		// Verification is not skipped: VerifyConnection does it, with the
		// current CA, for the name dialed.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServerChain(cs, r.cur.Load().pool)
		},
	}
}

// verifyServerChain is what crypto/tls would check with RootCAs set to pool.
// A server dialed by IP address sends no SNI, so ServerName is empty and only
// the chain and key usage are checked: a peer is authenticated by the server
// identity in its certificate (verifyServer), not by its address.
func verifyServerChain(cs tls.ConnectionState, pool *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("cluster: server presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, DNSName: cs.ServerName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}
