package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultTrustDomain is the trust domain of identities when a cluster does
// not choose its own.
const DefaultTrustDomain = "blobgc"

// Role is what a client may do; see the package documentation of the role
// table for the methods each role may call.
type Role string

// The client roles, from least to most trusted within their own scope.
const (
	RoleReader   Role = "reader"   // reads only
	RoleNode     Role = "node"     // reports and deregistration for its own node ids
	RoleSweeper  Role = "sweeper"  // eligible, claim, confirm, reads
	RoleOperator Role = "operator" // register, pin, unpin, cycles, prune, reads
	RoleAdmin    Role = "admin"    // everything, including config and membership
)

// Roles lists every client role.
var Roles = []Role{RoleReader, RoleNode, RoleSweeper, RoleOperator, RoleAdmin}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("auth: unknown role %q (want one of reader, node, sweeper, operator, admin)", s)
}

// serverSegment is the path segment that marks a server identity.
const serverSegment = "server"

// MaxNameLen bounds server ids, principal names and node ids in identities.
const MaxNameLen = 128

// ValidName reports whether s may be a server id, principal or node id in an
// identity: 1 to MaxNameLen characters from [A-Za-z0-9._-], starting with a
// letter or digit. Such names are safe in URIs, logs and terminals.
func ValidName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%d characters, at most %d", len(s), MaxNameLen)
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return fmt.Errorf("character %q at %d: use letters, digits, '.', '_' and '-', starting with a letter or digit", c, i)
		}
	}
	return nil
}

// Identity is what one credential names.
type Identity struct {
	TrustDomain string
	ServerID    string // set for a server identity
	Role        Role   // set for a client identity
	Name        string // the client's principal name (the node id for RoleNode)
}

// IsServer reports whether the identity is a raft server's.
func (id Identity) IsServer() bool { return id.ServerID != "" }

// URI returns the identity's URI.
func (id Identity) URI() *url.URL {
	path := "/" + serverSegment + "/" + id.ServerID
	if !id.IsServer() {
		path = "/" + string(id.Role) + "/" + id.Name
	}
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: path}
}

func (id Identity) String() string { return id.URI().String() }

// ServerIdentity is the identity of raft server id in trustDomain.
func ServerIdentity(trustDomain, id string) Identity {
	return Identity{TrustDomain: trustDomain, ServerID: id}
}

// ClientIdentity is the identity of a client named name with role in
// trustDomain.
func ClientIdentity(trustDomain string, role Role, name string) Identity {
	return Identity{TrustDomain: trustDomain, Role: role, Name: name}
}

// ParseURI parses a blobgc identity URI.
func ParseURI(u *url.URL) (Identity, error) {
	if u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return Identity{}, fmt.Errorf("auth: %q is not a spiffe://<trust-domain>/<kind>/<name> URI", u)
	}
	kind, name, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !ok {
		return Identity{}, fmt.Errorf("auth: %q: path must be /<kind>/<name>", u)
	}
	if err := ValidName(name); err != nil {
		return Identity{}, fmt.Errorf("auth: %q: name: %v", u, err)
	}
	if kind == serverSegment {
		return ServerIdentity(u.Host, name), nil
	}
	role, err := ParseRole(kind)
	if err != nil {
		return Identity{}, fmt.Errorf("auth: %q: %v", u, err)
	}
	return ClientIdentity(u.Host, role, name), nil
}

// FromCertificate returns the identity a verified certificate names: its one
// spiffe URI SAN in trustDomain. A certificate with none, or with several,
// names no identity.
func FromCertificate(cert *x509.Certificate, trustDomain string) (Identity, error) {
	var found []Identity
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" || u.Host != trustDomain {
			continue
		}
		id, err := ParseURI(u)
		if err != nil {
			return Identity{}, err
		}
		found = append(found, id)
	}
	switch len(found) {
	case 0:
		return Identity{}, fmt.Errorf("auth: certificate %q has no spiffe://%s/... URI SAN", cert.Subject.CommonName, trustDomain)
	case 1:
		return found[0], nil
	}
	return Identity{}, fmt.Errorf("auth: certificate %q has %d spiffe://%s/... URI SANs, want one", cert.Subject.CommonName, len(found), trustDomain)
}

// Principal is an authenticated client, as the handlers and provenance
// records see it.
type Principal struct {
	Name  string   // who: a person, a service or a VM node
	Role  Role     // what they may do
	Nodes []string // for RoleNode: the node ids they may report as
}

// String is how provenance records and audit logs name the principal:
// "<role>:<name>".
func (p Principal) String() string { return string(p.Role) + ":" + p.Name }

// MayActAsNode reports whether p may report or deregister as node id.
func (p Principal) MayActAsNode(id string) bool {
	if p.Role == RoleAdmin {
		return true
	}
	if p.Role != RoleNode {
		return false
	}
	for _, n := range p.Nodes {
		if n == id {
			return true
		}
	}
	return false
}

// PrincipalOf is the principal a client identity authenticates as.
func PrincipalOf(id Identity) Principal {
	p := Principal{Name: id.Name, Role: id.Role}
	if id.Role == RoleNode {
		p.Nodes = []string{id.Name}
	}
	return p
}

type principalKey struct{}

// NewContext returns ctx carrying the authenticated principal p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal that ctx carries, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
