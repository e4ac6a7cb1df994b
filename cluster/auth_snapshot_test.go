package cluster_test

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/auth"
)

// SaveSnapshot streams the whole state: admins only; every other role and an
// unauthenticated caller get nothing of it.
func TestSaveSnapshotNeedsAdmin(t *testing.T) {
	ac := startAuthCluster(t, true, nil)
	ctx := ctxT(t, time.Minute)
	tryOn := func(cc *grpc.ClientConn, token string) (*pb.SnapshotChunk, error) {
		st, err := pb.NewBlobGCClient(cc).SaveSnapshot(withToken(ctx, token), &pb.SaveSnapshotRequest{})
		if err != nil {
			return nil, err
		}
		return st.Recv()
	}
	cc := ac.conn(t, ac.Leader(), "", "")
	try := func(token string) (*pb.SnapshotChunk, error) { return tryOn(cc, token) }
	for _, r := range auth.Roles {
		if r == auth.RoleAdmin {
			// The leader takes the snapshot; should leadership move on a
			// loaded machine, ask the new leader.
			for {
				m, err := try(ac.tokens[r])
				if err == nil && m.GetInfo() != nil {
					break
				}
				if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
					t.Fatalf("as admin: %v %v", m, err)
				}
				cc = ac.conn(t, ac.Leader(), "", "")
			}
			continue
		}
		m, err := try(ac.tokens[r])
		if status.Code(err) != codes.PermissionDenied || m != nil {
			t.Fatalf("as %s: %v %v, want PermissionDenied", r, m, err)
		}
	}
	if m, err := try(""); status.Code(err) != codes.Unauthenticated || m != nil {
		t.Fatalf("without credentials: %v %v, want Unauthenticated", m, err)
	}
}
