package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"iter"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/fsm"
)

// Hash is a 32-byte content hash.
type Hash = fsm.Hash

// ParseHash parses 64 hex characters.
func ParseHash(s string) (Hash, error) { return fsm.ParseHash(s) }

// HashFromBytes converts a 32-byte slice.
func HashFromBytes(b []byte) (Hash, error) { return fsm.HashFromBytes(b) }

func toBytes(hs []Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

func fromBytes(bs [][]byte) ([]Hash, error) {
	out := make([]Hash, len(bs))
	for i, b := range bs {
		h, err := fsm.HashFromBytes(b)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// readKind is how a read of consistency cons is routed and retried.
func readKind(cons blobgcv1.Consistency) opKind {
	if cons == blobgcv1.Consistency_CONSISTENCY_STALE {
		return staleRead
	}
	return idempotent
}

func consistency(opts []ReadOption) blobgcv1.Consistency {
	var rc readConfig
	for _, o := range opts {
		o(&rc)
	}
	if rc.stale {
		return blobgcv1.Consistency_CONSISTENCY_STALE
	}
	return blobgcv1.Consistency_CONSISTENCY_LINEARIZABLE
}

// batches splits hs into slices of at most n.
func batches(hs []Hash, n int) [][]Hash {
	if len(hs) == 0 {
		return [][]Hash{nil}
	}
	var out [][]Hash
	for len(hs) > n {
		out = append(out, hs[:n])
		hs = hs[n:]
	}
	return append(out, hs)
}

// hashesWrite sends hs in batches through rpc and sums the results. An empty
// hs is sent as is, so the server's "empty batch" error reaches the caller.
func (c *Client) hashesWrite(ctx context.Context, method string, hs []Hash,
	rpc func(blobgcv1.BlobGCClient) func(context.Context, *blobgcv1.HashesRequest, ...grpc.CallOption) (*blobgcv1.WriteResponse, error),
) (*blobgcv1.WriteResponse, error) {
	total := &blobgcv1.WriteResponse{}
	for _, b := range batches(hs, c.cfg.batch) {
		req := &blobgcv1.HashesRequest{Hashes: toBytes(b)}
		var resp *blobgcv1.WriteResponse
		err := c.call(ctx, method, idempotent, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
			resp, err = rpc(api)(ctx, req, o...)
			return err
		})
		if err != nil {
			return total, err
		}
		total.Changed += resp.GetChanged()
		total.AppliedIndex = max(total.AppliedIndex, resp.GetAppliedIndex())
	}
	return total, nil
}

// RegisterBlobs registers blobs (known blobs keep their status; a collected
// one comes back as ACTIVE). Batches over the request limit are split; on
// error the response sums the batches that were applied.
func (c *Client) RegisterBlobs(ctx context.Context, hs []Hash) (*blobgcv1.WriteResponse, error) {
	return c.hashesWrite(ctx, "RegisterBlobs", hs, func(a blobgcv1.BlobGCClient) func(context.Context, *blobgcv1.HashesRequest, ...grpc.CallOption) (*blobgcv1.WriteResponse, error) {
		return a.RegisterBlobs
	})
}

// Pin adds coordinator pins.
func (c *Client) Pin(ctx context.Context, hs []Hash) (*blobgcv1.WriteResponse, error) {
	return c.hashesWrite(ctx, "Pin", hs, func(a blobgcv1.BlobGCClient) func(context.Context, *blobgcv1.HashesRequest, ...grpc.CallOption) (*blobgcv1.WriteResponse, error) {
		return a.Pin
	})
}

// Unpin removes coordinator pins.
func (c *Client) Unpin(ctx context.Context, hs []Hash) (*blobgcv1.WriteResponse, error) {
	return c.hashesWrite(ctx, "Unpin", hs, func(a blobgcv1.BlobGCClient) func(context.Context, *blobgcv1.HashesRequest, ...grpc.CallOption) (*blobgcv1.WriteResponse, error) {
		return a.Unpin
	})
}

// ConfirmCollected tells the cluster the sweeper deleted these (claimed) blobs.
func (c *Client) ConfirmCollected(ctx context.Context, hs []Hash) (*blobgcv1.WriteResponse, error) {
	return c.hashesWrite(ctx, "ConfirmCollected", hs, func(a blobgcv1.BlobGCClient) func(context.Context, *blobgcv1.HashesRequest, ...grpc.CallOption) (*blobgcv1.WriteResponse, error) {
		return a.ConfirmCollected
	})
}

// Claim asks to delete marked blobs and returns those granted: delete exactly
// these, then confirm them. Claims are idempotent (a granted blob is granted
// again), so a retried or repeated claim is safe.
func (c *Client) Claim(ctx context.Context, hs []Hash) (granted []Hash, appliedIndex uint64, err error) {
	for _, b := range batches(hs, c.cfg.batch) {
		req := &blobgcv1.HashesRequest{Hashes: toBytes(b)}
		var resp *blobgcv1.ClaimResponse
		err = c.call(ctx, "Claim", idempotent, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
			resp, err = api.Claim(ctx, req, o...)
			return err
		})
		if err != nil {
			return granted, appliedIndex, err
		}
		g, err := fromBytes(resp.GetGranted())
		if err != nil {
			return granted, appliedIndex, err
		}
		granted = append(granted, g...)
		appliedIndex = max(appliedIndex, resp.GetAppliedIndex())
	}
	return granted, appliedIndex, nil
}

// Report sends one report request as is (no chunking, no sequence keeping;
// see Reporter for that).
func (c *Client) Report(ctx context.Context, req *blobgcv1.ReportRequest) (*blobgcv1.ReportResponse, error) {
	var resp *blobgcv1.ReportResponse
	err := c.call(ctx, "Report", idempotent, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.Report(ctx, req, o...)
		return err
	})
	return resp, err
}

// DeregisterNode drops a VM node's report now (a graceful leave).
func (c *Client) DeregisterNode(ctx context.Context, nodeID string) (*blobgcv1.WriteResponse, error) {
	var resp *blobgcv1.WriteResponse
	err := c.call(ctx, "DeregisterNode", idempotent, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.DeregisterNode(ctx, &blobgcv1.DeregisterNodeRequest{NodeId: nodeID}, o...)
		return err
	})
	return resp, err
}

// Status returns a blob's status and who protects it.
func (c *Client) Status(ctx context.Context, h Hash, opts ...ReadOption) (*blobgcv1.BlobStatus, error) {
	req := &blobgcv1.GetStatusRequest{Hash: h[:], Consistency: consistency(opts)}
	var resp *blobgcv1.BlobStatus
	err := c.call(ctx, "GetStatus", readKind(req.Consistency), func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.GetStatus(ctx, req, o...)
		return err
	})
	return resp, err
}

// ListBlobsPage returns one page of known blobs in state (UNSPECIFIED: all),
// ordered by hash, starting after pageToken ("" for the first page).
func (c *Client) ListBlobsPage(ctx context.Context, state blobgcv1.BlobState, pageSize int32, pageToken string, opts ...ReadOption) (*blobgcv1.ListBlobsResponse, error) {
	req := &blobgcv1.ListBlobsRequest{State: state, PageSize: pageSize, PageToken: pageToken, Consistency: consistency(opts)}
	var resp *blobgcv1.ListBlobsResponse
	err := c.call(ctx, "ListBlobs", readKind(req.Consistency), func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.ListBlobs(ctx, req, o...)
		return err
	})
	return resp, err
}

// ListBlobs iterates over every known blob in state, page by page. Each page
// is a consistent read; the whole listing is not one snapshot. Iteration
// stops after the first error, which it yields.
func (c *Client) ListBlobs(ctx context.Context, state blobgcv1.BlobState, opts ...ReadOption) iter.Seq2[*blobgcv1.BlobStatus, error] {
	return func(yield func(*blobgcv1.BlobStatus, error) bool) {
		token := ""
		for {
			page, err := c.ListBlobsPage(ctx, state, 0, token, opts...)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, b := range page.GetBlobs() {
				if !yield(b, nil) {
					return
				}
			}
			if token = page.GetNextPageToken(); token == "" {
				return
			}
		}
	}
}

// Stats returns blob counts by status and node counts.
func (c *Client) Stats(ctx context.Context, opts ...ReadOption) (*blobgcv1.Stats, error) {
	req := &blobgcv1.GetStatsRequest{Consistency: consistency(opts)}
	var resp *blobgcv1.Stats
	err := c.call(ctx, "GetStats", readKind(req.Consistency), func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.GetStats(ctx, req, o...)
		return err
	})
	return resp, err
}

// NodesPage returns one page of the VM nodes that have a report, ordered by
// id, starting after pageToken ("" for the first page).
func (c *Client) NodesPage(ctx context.Context, pageSize int32, pageToken string, opts ...ReadOption) (*blobgcv1.ListNodesResponse, error) {
	req := &blobgcv1.ListNodesRequest{PageSize: pageSize, PageToken: pageToken, Consistency: consistency(opts)}
	var resp *blobgcv1.ListNodesResponse
	err := c.call(ctx, "ListNodes", readKind(req.Consistency), func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.ListNodes(ctx, req, o...)
		return err
	})
	return resp, err
}

// Nodes lists every VM node that has a report, by id, following the pages.
// Each page is a consistent read; the whole list is not one snapshot.
func (c *Client) Nodes(ctx context.Context, opts ...ReadOption) ([]*blobgcv1.NodeInfo, error) {
	var nodes []*blobgcv1.NodeInfo
	token := ""
	for {
		page, err := c.NodesPage(ctx, 0, token, opts...)
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, page.GetNodes()...)
		if token = page.GetNextPageToken(); token == "" {
			return nodes, nil
		}
	}
}

// RunCycle runs a GC cycle now, or with dryRun computes what it would do
// without applying it. Each call carries a fresh random request id that its
// retries reuse, so the cluster runs one cycle per call however often it is
// retried; a retry answered from the first run has Duplicate set.
func (c *Client) RunCycle(ctx context.Context, dryRun bool) (*blobgcv1.CycleResult, error) {
	req := &blobgcv1.RunCycleRequest{DryRun: dryRun}
	if !dryRun {
		req.RequestId = newRequestID()
	}
	var resp *blobgcv1.CycleResult
	err := c.call(ctx, "RunCycle", idempotent, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.RunCycle(ctx, req, o...)
		return err
	})
	return resp, err
}

// newRequestID returns 128 random bits in hex.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return hex.EncodeToString(b[:])
}

// PruneStaleNodes drops the reports of stale nodes and returns their ids.
func (c *Client) PruneStaleNodes(ctx context.Context) (*blobgcv1.PruneStaleNodesResponse, error) {
	var resp *blobgcv1.PruneStaleNodesResponse
	err := c.call(ctx, "PruneStaleNodes", idempotent, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.PruneStaleNodes(ctx, &blobgcv1.PruneStaleNodesRequest{}, o...)
		return err
	})
	return resp, err
}

// ListEligiblePage returns one page of the blobs eligible for collection.
func (c *Client) ListEligiblePage(ctx context.Context, pageSize int32, pageToken string, opts ...ReadOption) (*blobgcv1.ListEligibleResponse, error) {
	req := &blobgcv1.ListEligibleRequest{PageSize: pageSize, PageToken: pageToken, Consistency: consistency(opts)}
	var resp *blobgcv1.ListEligibleResponse
	err := c.call(ctx, "ListEligible", readKind(req.Consistency), func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.ListEligible(ctx, req, o...)
		return err
	})
	return resp, err
}

// ListEligible iterates over every blob eligible for collection.
func (c *Client) ListEligible(ctx context.Context, opts ...ReadOption) iter.Seq2[Hash, error] {
	return func(yield func(Hash, error) bool) {
		token := ""
		for {
			page, err := c.ListEligiblePage(ctx, 0, token, opts...)
			if err != nil {
				yield(Hash{}, err)
				return
			}
			hs, err := fromBytes(page.GetHashes())
			if err != nil {
				yield(Hash{}, err)
				return
			}
			for _, h := range hs {
				if !yield(h, nil) {
					return
				}
			}
			if token = page.GetNextPageToken(); token == "" {
				return
			}
		}
	}
}

// HistoryPage returns one page of the cycle history, oldest first.
func (c *Client) HistoryPage(ctx context.Context, pageSize int32, pageToken string, opts ...ReadOption) (*blobgcv1.HistoryResponse, error) {
	req := &blobgcv1.HistoryRequest{PageSize: pageSize, PageToken: pageToken, Consistency: consistency(opts)}
	var resp *blobgcv1.HistoryResponse
	err := c.call(ctx, "History", readKind(req.Consistency), func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.History(ctx, req, o...)
		return err
	})
	return resp, err
}

// History iterates over the cycle history, oldest first.
func (c *Client) History(ctx context.Context, opts ...ReadOption) iter.Seq2[*blobgcv1.HistoryEvent, error] {
	return func(yield func(*blobgcv1.HistoryEvent, error) bool) {
		token := ""
		for {
			page, err := c.HistoryPage(ctx, 0, token, opts...)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, e := range page.GetEvents() {
				if !yield(e, nil) {
					return
				}
			}
			if token = page.GetNextPageToken(); token == "" {
				return
			}
		}
	}
}

// GetConfig returns the replicated GC configuration.
func (c *Client) GetConfig(ctx context.Context, opts ...ReadOption) (*blobgcv1.Config, error) {
	req := &blobgcv1.GetConfigRequest{Consistency: consistency(opts)}
	var resp *blobgcv1.Config
	err := c.call(ctx, "GetConfig", readKind(req.Consistency), func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.GetConfig(ctx, req, o...)
		return err
	})
	return resp, err
}

// SetConfig changes the fields set in req and returns the whole new
// configuration. Setting the same values again changes nothing, so it is
// retried like every idempotent write.
func (c *Client) SetConfig(ctx context.Context, req *blobgcv1.SetConfigRequest) (*blobgcv1.Config, error) {
	var resp *blobgcv1.Config
	err := c.call(ctx, "SetConfig", idempotent, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.SetConfig(ctx, req, o...)
		return err
	})
	return resp, err
}

// Members lists the raft servers as the leader sees them.
func (c *Client) Members(ctx context.Context) (*blobgcv1.MembersResponse, error) {
	var resp *blobgcv1.MembersResponse
	err := c.call(ctx, "Members", idempotent, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.Members(ctx, &blobgcv1.MembersRequest{}, o...)
		return err
	})
	return resp, err
}

// MembersOf asks one server for its view of the members, without routing to
// the leader and with a single attempt.
func (c *Client) MembersOf(ctx context.Context, addr string) (*blobgcv1.MembersResponse, error) {
	var resp *blobgcv1.MembersResponse
	_, err := c.attempt(ctx, addr, false, true, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.Members(ctx, &blobgcv1.MembersRequest{}, o...)
		return err
	})
	return resp, err
}

// AddServer adds a server to the cluster (a voter unless nonVoter).
func (c *Client) AddServer(ctx context.Context, id, addr string, nonVoter bool) (*blobgcv1.MembersResponse, error) {
	req := &blobgcv1.AddServerRequest{Id: id, Address: addr, NonVoter: nonVoter}
	var resp *blobgcv1.MembersResponse
	err := c.call(ctx, "AddServer", idempotent, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.AddServer(ctx, req, o...)
		return err
	})
	return resp, err
}

// RemoveServer removes a server from the cluster.
func (c *Client) RemoveServer(ctx context.Context, id string) (*blobgcv1.MembersResponse, error) {
	var resp *blobgcv1.MembersResponse
	err := c.call(ctx, "RemoveServer", idempotent, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.RemoveServer(ctx, &blobgcv1.RemoveServerRequest{Id: id}, o...)
		return err
	})
	return resp, err
}

// TransferLeadership moves leadership to targetID ("" lets raft choose) and
// returns the new leader. It is retried only on Unavailable.
func (c *Client) TransferLeadership(ctx context.Context, targetID string) (*blobgcv1.TransferLeadershipResponse, error) {
	var resp *blobgcv1.TransferLeadershipResponse
	err := c.call(ctx, "TransferLeadership", once, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.TransferLeadership(ctx, &blobgcv1.TransferLeadershipRequest{TargetId: targetID}, o...)
		return err
	})
	if err == nil && resp.GetLeaderAddress() != "" {
		c.setLeader(resp.GetLeaderAddress())
	}
	return resp, err
}

// DigestOf returns the state digest of the server at addr (not of the
// leader): comparing servers' digests at the same applied index shows they
// hold the same state. It retries that one server while it is Unavailable.
func (c *Client) DigestOf(ctx context.Context, addr string) (*blobgcv1.DigestResponse, error) {
	var resp *blobgcv1.DigestResponse
	err := c.callAt(ctx, "Digest", idempotent, addr, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) (err error) {
		resp, err = api.Digest(ctx, &blobgcv1.DigestRequest{}, o...)
		return err
	})
	return resp, err
}

// Health asks the server at addr for the grpc.health.v1 status of service
// ("" is the server as a whole; cluster.LeaderHealthService is SERVING only
// on the leader). One attempt, no routing: it is about that one server.
func (c *Client) Health(ctx context.Context, addr, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	cc, err := c.conn(addr)
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.callTimeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN, err
	}
	return resp.GetStatus(), nil
}
