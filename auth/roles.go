package auth

import (
	"sort"
	"strings"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
)

// RoleServer is the role of a raft server of the cluster calling the API with
// its own certificate (not on behalf of a client): it may describe itself to
// the leader's Members fan-out and ask to be added (joining, for its own id
// only). No token or client certificate can hold it.
const RoleServer Role = "server"

// Role sets shared by several rules. Admin is in every rule.
var (
	readers     = []Role{RoleReader, RoleSweeper, RoleOperator, RoleAdmin}
	nodeReaders = []Role{RoleReader, RoleNode, RoleSweeper, RoleOperator, RoleAdmin}
	operators   = []Role{RoleOperator, RoleAdmin}
	sweepers    = []Role{RoleSweeper, RoleAdmin}
	admins      = []Role{RoleAdmin}
)

// methodRoles is the one role table: every API method and the roles that may
// call it. A method missing here is refused to everyone (and fails a test).
// Rules that depend on the request live in the handlers: a node reports and
// deregisters only as the node ids its credential names (Principal.
// MayActAsNode); a server adds only itself.
//
// A node's "own state" reads are GetStatus (whether the blobs it uses are
// safe) and GetConfig (the grace and stale thresholds its reporting must
// respect); listings of other nodes and blobs are not its business.
// Digest costs a full state serialisation: operators and admins only.
var methodRoles = map[string][]Role{
	pb.BlobGC_Report_FullMethodName:         {RoleNode, RoleAdmin},
	pb.BlobGC_DeregisterNode_FullMethodName: {RoleNode, RoleAdmin},

	pb.BlobGC_RegisterBlobs_FullMethodName:   operators,
	pb.BlobGC_Pin_FullMethodName:             operators,
	pb.BlobGC_Unpin_FullMethodName:           operators,
	pb.BlobGC_RunCycle_FullMethodName:        operators,
	pb.BlobGC_SaveSnapshot_FullMethodName:    admins,
	pb.BlobGC_PruneStaleNodes_FullMethodName: operators,
	pb.BlobGC_Digest_FullMethodName:          operators,

	pb.BlobGC_GetStatus_FullMethodName:    nodeReaders,
	pb.BlobGC_GetConfig_FullMethodName:    nodeReaders,
	pb.BlobGC_ListBlobs_FullMethodName:    readers,
	pb.BlobGC_GetStats_FullMethodName:     readers,
	pb.BlobGC_ListNodes_FullMethodName:    readers,
	pb.BlobGC_History_FullMethodName:      readers,
	pb.BlobGC_ListEligible_FullMethodName: readers,
	pb.BlobGC_Members_FullMethodName:      append(append([]Role(nil), readers...), RoleServer),

	pb.BlobGC_Claim_FullMethodName:            sweepers,
	pb.BlobGC_ConfirmCollected_FullMethodName: sweepers,

	pb.BlobGC_SetConfig_FullMethodName:          admins,
	pb.BlobGC_AddServer_FullMethodName:          {RoleAdmin, RoleServer},
	pb.BlobGC_RemoveServer_FullMethodName:       admins,
	pb.BlobGC_TransferLeadership_FullMethodName: admins,
}

// RolesFor returns the roles that may call the API method with this full
// name ("/blobgc.v1.BlobGC/Report"), and whether the method has a rule.
func RolesFor(method string) ([]Role, bool) {
	r, ok := methodRoles[method]
	return r, ok
}

// Allowed reports whether role r may call method. A method without a rule is
// allowed to no one.
func Allowed(method string, r Role) bool { return holds(methodRoles[method], r) }

// holds reports whether r is among roles.
func holds(roles []Role, r Role) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

// Methods lists every method with a rule, sorted.
func Methods() []string {
	out := make([]string, 0, len(methodRoles))
	for m := range methodRoles {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// JoinRoles renders roles for messages: "operator or admin".
func JoinRoles(roles []Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, " or ")
}

// PageUI names the operator's web page (/ui on a server's HTTP listener) in
// the page table.
const PageUI = "/ui"

// pageRoles is the role table of the HTTP pages that are not API methods
// (the JSON API is the API, and methodRoles rules it). The page shows what
// the reads it makes show, so it needs the role that may read.
var pageRoles = map[string][]Role{
	PageUI: readers,
}

// PageRolesFor returns the roles that may open an HTTP page, and whether the
// page has a rule.
func PageRolesFor(page string) ([]Role, bool) {
	r, ok := pageRoles[page]
	return r, ok
}

// PageAllowed reports whether role r may open the page. A page without a
// rule is allowed to no one.
func PageAllowed(page string, r Role) bool { return holds(pageRoles[page], r) }
