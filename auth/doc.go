// Package auth says who is calling blobgc and what they may do.
//
// # Identities
//
// Every credential names one identity as a SPIFFE-style URI in a trust
// domain (default "blobgc"; a cluster may choose its own):
//
//	spiffe://<trust-domain>/server/<server-id>   a raft server of the cluster
//	spiffe://<trust-domain>/<role>/<name>        a client holding one role
//
// Certificates carry it as their one URI SAN in that trust domain; bearer
// tokens name the principal and role in the token file. A client
// certificate is never a peer: only the server form is, and only for an id
// in the current raft configuration. For the node role the name is the VM
// node id the credential may report as.
//
// # Bearer tokens and roles
//
// A token file lists accepted bearer tokens by their SHA-256 (see
// ParseTokens for the format); `blobgc token add` makes a token, prints it
// once and appends its hash. The role table (RolesFor) names, for every API
// method, the roles that may call it; admin is in every rule. RoleServer is
// only ever a server calling with its own certificate.
//
// # Principals in a request
//
// The server authenticates each call once, at the edge, and puts the
// resulting Principal into the request context (NewContext); handlers and
// the provenance records read it back with FromContext.
package auth
