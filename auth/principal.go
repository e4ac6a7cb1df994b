package auth

import (
	"errors"
	"fmt"
	"strings"
)

// Anonymous is the principal of every caller when a server has no
// authentication configured (no token file, no client CA): `blobgc dev`,
// plaintext test clusters. It may do everything.
var Anonymous = Principal{Name: "anonymous", Role: RoleAdmin}

// Validate checks that p can be named in a token file or forwarded between
// servers: a client role, a valid name, and node ids only for RoleNode (which
// needs at least one).
func (p Principal) Validate() error {
	if _, err := ParseRole(string(p.Role)); err != nil {
		return err
	}
	if err := ValidName(p.Name); err != nil {
		return fmt.Errorf("auth: principal %q: %v", p.Name, err)
	}
	if p.Role != RoleNode && len(p.Nodes) > 0 {
		return fmt.Errorf("auth: principal %q: node ids are only for role node", p.Name)
	}
	if p.Role == RoleNode && len(p.Nodes) == 0 {
		return fmt.Errorf("auth: principal %q: role node needs the node ids it may report as", p.Name)
	}
	for _, n := range p.Nodes {
		if err := ValidName(n); err != nil {
			return fmt.Errorf("auth: principal %q: node id %q: %v", p.Name, n, err)
		}
	}
	return nil
}

// EncodePrincipal renders p for the metadata a follower forwards to the
// leader: "<role>:<name>" or, for RoleNode, "<role>:<name>:<node>,<node>".
// Names cannot hold ':' or ',' (ValidName), so the form is unambiguous.
func EncodePrincipal(p Principal) string {
	s := p.String()
	if len(p.Nodes) > 0 {
		s += ":" + strings.Join(p.Nodes, ",")
	}
	return s
}

// DecodePrincipal parses EncodePrincipal's form and validates the principal.
// Unlike a token file it may name a server (a joining server's call
// forwarded to the leader).
func DecodePrincipal(s string) (Principal, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Principal{}, errors.New("auth: principal: want <role>:<name>[:<node>,...]")
	}
	p := Principal{Role: Role(parts[0]), Name: parts[1]}
	if p.Role == RoleServer && len(parts) == 2 {
		if err := ValidName(p.Name); err != nil {
			return Principal{}, fmt.Errorf("auth: server %q: %v", p.Name, err)
		}
		return p, nil
	}
	if len(parts) == 3 {
		p.Nodes = strings.Split(parts[2], ",")
	}
	if err := p.Validate(); err != nil {
		return Principal{}, err
	}
	return p, nil
}
