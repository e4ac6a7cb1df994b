package cluster_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/auth"
)

// SaveSnapshot streams the whole state: admins only; every other role and an
// unauthenticated caller get nothing of it.
func TestSaveSnapshotNeedsAdmin(t *testing.T) {
	ac := startAuthCluster(t, true, nil)
	cc := ac.conn(t, ac.Leader(), "", "")
	ctx := ctxT(t, time.Minute)
	try := func(token string) (*pb.SnapshotChunk, error) {
		st, err := pb.NewBlobGCClient(cc).SaveSnapshot(withToken(ctx, token), &pb.SaveSnapshotRequest{})
		if err != nil {
			return nil, err
		}
		return st.Recv()
	}
	for _, r := range auth.Roles {
		m, err := try(ac.tokens[r])
		if r == auth.RoleAdmin {
			if err != nil || m.GetInfo() == nil {
				t.Fatalf("as admin: %v %v", m, err)
			}
			continue
		}
		if status.Code(err) != codes.PermissionDenied || m != nil {
			t.Fatalf("as %s: %v %v, want PermissionDenied", r, m, err)
		}
	}
	if m, err := try(""); status.Code(err) != codes.Unauthenticated || m != nil {
		t.Fatalf("without credentials: %v %v, want Unauthenticated", m, err)
	}
}
