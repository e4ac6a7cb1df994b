package cluster_test

import (
	"context"
	"crypto/tls"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testpki"
	tpb "github.com/blobgc/blobgc/transport/transportpb"
)

// raftClient dials s's raft service with the given client certificates.
func raftClient(t *testing.T, files testpki.Files, s *cluster.Server, certs ...tls.Certificate) tpb.RaftClient {
	return tpb.NewRaftClient(tlsConn(t, files, s, certs...))
}

// forge sends what would take over a follower: an AppendEntries of a far
// later term that replaces its whole log with one entry, and a TimeoutNow.
func forge(ctx context.Context, cl tpb.RaftClient, from string, term uint64) (appendErr, timeoutErr error) {
	h := &tpb.RPCHeader{ProtocolVersion: int64(raft.ProtocolVersionMax), Id: []byte(from), Addr: []byte("127.0.0.1:1")}
	_, appendErr = cl.AppendEntries(ctx, &tpb.AppendEntriesRequest{
		Header: h, Term: term, LeaderCommitIndex: 1,
		Entries: []*tpb.Log{{Index: 1, Term: term, Type: uint32(raft.LogCommand), Data: []byte("forged")}},
	})
	_, timeoutErr = cl.TimeoutNow(ctx, &tpb.TimeoutNowRequest{Header: h})
	return appendErr, timeoutErr
}

// Only a current member's server certificate, speaking as itself, reaches
// a follower's raft: every other caller is refused and the follower's log,
// term and state stay as they were. The same forged requests from a
// member's certificate do take the follower over, so the test can fail.
func TestPeers_RaftRefusesNonPeers(t *testing.T) {
	c, files := startTLS(t, 3)
	ctx := ctxT(t, 2*time.Minute)
	leader := c.Leader()
	try(tlsClient(t, files, leader).Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 3)})).must(t)
	c.WaitConverged()
	f := c.Followers()[0]
	member := ""
	for _, s := range c.Running() {
		if s != f && s != leader {
			member = s.ID()
		}
	}
	ca, other := files.Authority, testpki.NewCA(t, "another CA")
	const domain = auth.DefaultTrustDomain
	term := f.Raft().CurrentTerm() + 1000
	lastIndex := f.Raft().LastIndex()
	_, digest := f.FSM().Digest()

	cases := []struct {
		name  string
		certs []tls.Certificate
		from  string
		codes []codes.Code // a failed handshake is Unavailable
	}{
		{"no certificate", nil, member, []codes.Code{codes.Unauthenticated}},
		// A client offers no certificate the server's CAs did not sign.
		{"wrong CA", []tls.Certificate{other.Server(t, domain, member)}, member, []codes.Code{codes.Unavailable, codes.Unauthenticated}},
		{"expired", []tls.Certificate{ca.IssueSpec(t, testpki.Spec{Name: member, Serving: true,
			URIs: []*url.URL{auth.ServerIdentity(domain, member).URI()}, NotAfter: time.Now().Add(-time.Hour)})}, member, []codes.Code{codes.Unavailable}},
		{"wrong name", []tls.Certificate{ca.Server(t, "other-domain", member)}, member, []codes.Code{codes.PermissionDenied}},
		{"client certificate", []tls.Certificate{ca.Client(t, domain, auth.RoleAdmin, member)}, member, []codes.Code{codes.PermissionDenied}},
		{"server not in the configuration", []tls.Certificate{ca.Server(t, domain, "s9")}, "s9", []codes.Code{codes.PermissionDenied}},
		{"certificate id is not the source", []tls.Certificate{ca.Server(t, domain, member)}, leader.ID(), []codes.Code{codes.PermissionDenied}},
	}
	for _, tc := range cases {
		cl := raftClient(t, files, f, tc.certs...)
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		errA, errT := forge(callCtx, cl, tc.from, term)
		cancel()
		for _, err := range []error{errA, errT} {
			if !oneOf(status.Code(err), tc.codes) {
				t.Errorf("%s: %v, want one of %v", tc.name, err, tc.codes)
			}
		}
	}
	if got := f.Raft().CurrentTerm(); got >= term {
		t.Fatalf("follower's term went to %d", got)
	}
	if got := f.Raft().LastIndex(); got < lastIndex {
		t.Fatalf("follower's log was truncated: last index %d, was %d", got, lastIndex)
	}
	if _, d := f.FSM().Digest(); d != digest {
		t.Fatal("follower's state changed")
	}

	// Control: the member's own certificate, as itself, is obeyed.
	errA, _ := forge(ctx, raftClient(t, files, f, ca.Server(t, domain, member)), member, term)
	if errA != nil {
		t.Fatalf("forged append from a member: %v", errA)
	}
	if got := f.Raft().CurrentTerm(); got < term {
		t.Fatalf("control: the member's request did not reach raft (term %d)", got)
	}
}

func oneOf(c codes.Code, cs []codes.Code) bool {
	for _, x := range cs {
		if c == x {
			return true
		}
	}
	return false
}

// A removed server loses its access to raft; a server being added (not
// yet in anyone's configuration) is admitted by the empty configuration
// of the fresh server only.
func TestPeers_RemovedServerIsRefused(t *testing.T) {
	c, files := startTLS(t, 3)
	ctx := ctxT(t, 2*time.Minute)
	leader := c.Leader()
	victim := c.Followers()[0]
	other := c.Followers()[1]
	cert := files.Authority.Server(t, auth.DefaultTrustDomain, victim.ID())
	cl := raftClient(t, files, other, cert)
	heartbeat := func() error {
		h := &tpb.RPCHeader{ProtocolVersion: int64(raft.ProtocolVersionMax), Id: []byte(victim.ID())}
		// Term 0 is below every term: raft refuses it without a change.
		_, err := cl.RequestPreVote(ctx, &tpb.RequestPreVoteRequest{Header: h, Term: 0})
		return err
	}
	if err := heartbeat(); err != nil {
		t.Fatalf("a member's call: %v", err)
	}
	try(tlsClient(t, files, leader).RemoveServer(ctx, &pb.RemoveServerRequest{Id: victim.ID()})).must(t)
	clustertest.Eventually(t, time.Minute, "the removed server refused", func() bool {
		return status.Code(heartbeat()) == codes.PermissionDenied
	})
}

// AddServer refuses bad ids and addresses before anything is proposed.
func TestAddServerValidates(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, time.Minute)
	before := try(c.Client(c.Leader()).Members(ctx, &pb.MembersRequest{})).must(t)
	cases := []struct{ id, addr, field string }{
		{"", "127.0.0.1:7009", "id"},
		{"s\x1b[2J", "127.0.0.1:7009", "id"},
		{"s 5", "127.0.0.1:7009", "id"},
		{strings.Repeat("s", auth.MaxNameLen+1), "127.0.0.1:7009", "id"},
		{"s5", "", "address"},
		{"s5", "not a host port", "address"},
		{"s5", "127.0.0.1:0", "address"},
		{"s5", "127.0.0.1:65536", "address"},
		{"s5", "127.0.0.1:http", "address"},
		{"s5", ":7009", "address"},
		{"s5", "host\n:7009", "address"},
	}
	for _, s := range []*cluster.Server{c.Leader(), c.Followers()[0]} {
		for _, tc := range cases {
			_, err := c.Client(s).AddServer(ctx, &pb.AddServerRequest{Id: tc.id, Address: tc.addr})
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tc.field+":") {
				t.Errorf("AddServer(%q, %q) via %s: %v, want InvalidArgument about %s", tc.id, tc.addr, s.ID(), err, tc.field)
			}
		}
	}
	after := try(c.Client(c.Leader()).Members(ctx, &pb.MembersRequest{})).must(t)
	if len(after.Members) != len(before.Members) {
		t.Fatalf("members changed: %d -> %d", len(before.Members), len(after.Members))
	}
}
