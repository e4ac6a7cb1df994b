package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/blobgc/blobgc/auth"
)

// tlsInitFlags are the flags of `blobgc tls init`.
type tlsInitFlags struct {
	dir, trustDomain        string
	servers, hosts, clients []string
	validFor                time.Duration
}

func tlsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Certificates for a cluster's TLS",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(tlsInitCmd())
	return cmd
}

func tlsInitCmd() *cobra.Command {
	var f tlsInitFlags
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make a CA, server and client certificates in a directory",
		Long: `Make a certificate authority and, signed by it, a certificate per server and
per client, as PEM files in --dir:

  ca.pem, ca-key.pem                   the CA (keep ca-key.pem offline in production)
  server-<id>.pem, server-<id>-key.pem server <id>: identity spiffe://<trust-domain>/server/<id>,
                                       serving for <id>, --hosts
  <role>-<name>.pem, <role>-<name>-key.pem
                                       a client with that role: spiffe://<trust-domain>/<role>/<name>

Files that exist are kept, and an existing CA signs the new certificates, so
running it again adds servers or clients (for example a VM node's
credential, --clients node:vm-17) without touching the rest.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.dir, "dir", "", "directory for the PEM files (created if missing; required)")
	fs.StringVar(&f.trustDomain, "trust-domain", auth.DefaultTrustDomain, "trust domain of the identities")
	fs.StringSliceVar(&f.servers, "servers", nil, "server ids to make certificates for (e.g. s1,s2,s3)")
	fs.StringSliceVar(&f.hosts, "hosts", []string{"localhost", "127.0.0.1"}, "DNS names and IP addresses every server certificate is valid for, besides the server's id")
	fs.StringSliceVar(&f.clients, "clients", nil, "client certificates as role:name (roles: reader, node, sweeper, operator, admin; a node's name is its node id)")
	fs.DurationVar(&f.validFor, "valid-for", 365*24*time.Hour, "validity of new server and client certificates (the CA gets ten times as long)")
	return cmd
}

// tlsClient is one --clients entry.
type tlsClient struct {
	role auth.Role
	name string
}

func (f *tlsInitFlags) parse() ([]tlsClient, error) {
	if f.dir == "" {
		return nil, errors.New("--dir is required")
	}
	if f.validFor <= 0 {
		return nil, errors.New("--valid-for must be positive")
	}
	if err := auth.ValidName(f.trustDomain); err != nil {
		return nil, fmt.Errorf("--trust-domain %q: %v", f.trustDomain, err)
	}
	for _, id := range f.servers {
		if err := auth.ValidName(id); err != nil {
			return nil, fmt.Errorf("--servers: %q: %v", id, err)
		}
	}
	for _, h := range f.hosts {
		if h == "" || strings.ContainsAny(h, " \t\r\n/") {
			return nil, fmt.Errorf("--hosts: %q is not a DNS name or IP address", h)
		}
	}
	var clients []tlsClient
	for _, c := range f.clients {
		r, name, ok := strings.Cut(c, ":")
		if !ok {
			return nil, fmt.Errorf("--clients: %q: want role:name", c)
		}
		role, err := auth.ParseRole(r)
		if err != nil {
			return nil, fmt.Errorf("--clients: %q: %v", c, err)
		}
		if err := auth.ValidName(name); err != nil {
			return nil, fmt.Errorf("--clients: %q: name: %v", c, err)
		}
		clients = append(clients, tlsClient{role, name})
	}
	return clients, nil
}

func (f *tlsInitFlags) run(out io.Writer) error {
	clients, err := f.parse()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return err
	}
	path := func(name string) string { return filepath.Join(f.dir, name) }
	ca, err := f.loadOrMakeCA(out, path("ca.pem"), path("ca-key.pem"))
	if err != nil {
		return err
	}
	notAfter := time.Now().Add(f.validFor)
	issue := func(base string, spec auth.CertSpec) error {
		certFile, keyFile := path(base+".pem"), path(base+"-key.pem")
		if exists(certFile) || exists(keyFile) {
			fmt.Fprintf(out, "kept    %s\n", certFile)
			return nil
		}
		c, err := ca.Issue(spec)
		if err == nil {
			err = auth.WriteCertFiles(c, certFile, keyFile)
		}
		if err != nil {
			return fmt.Errorf("%s: %v", base, err)
		}
		fmt.Fprintf(out, "wrote   %s  %s\n", certFile, spec.URIs[0])
		return nil
	}
	for _, id := range f.servers {
		if err := issue("server-"+id, auth.ServerSpec(f.trustDomain, id, f.hosts, notAfter)); err != nil {
			return err
		}
	}
	for _, c := range clients {
		if err := issue(string(c.role)+"-"+c.name, auth.ClientSpec(f.trustDomain, c.role, c.name, notAfter)); err != nil {
			return err
		}
	}
	return nil
}

// loadOrMakeCA keeps an existing CA, so a second run adds certificates that
// the cluster already trusts.
func (f *tlsInitFlags) loadOrMakeCA(out io.Writer, certFile, keyFile string) (*auth.CA, error) {
	if exists(certFile) {
		ca, err := auth.LoadCA(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("existing CA: %v", err)
		}
		fmt.Fprintf(out, "kept    %s\n", certFile)
		return ca, nil
	}
	ca, err := auth.NewCA("blobgc CA "+f.trustDomain, time.Now().Add(10*f.validFor))
	if err == nil {
		err = ca.WriteCAFiles(certFile, keyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("CA: %v", err)
	}
	fmt.Fprintf(out, "wrote   %s\n", certFile)
	return ca, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
