package transport

import (
	"time"

	"github.com/hashicorp/raft"

	pb "github.com/blobgc/blobgc/transport/transportpb"
)

// Conversions between raft's structs and their protobuf mirrors. Every field is
// carried, nil and empty byte slices are kept apart where protobuf allows it
// (see the completeness test), and LogType travels as a raw number.

func encodeHeader(h raft.RPCHeader) *pb.RPCHeader {
	return &pb.RPCHeader{ProtocolVersion: int64(h.ProtocolVersion), Id: h.ID, Addr: h.Addr}
}

func decodeHeader(h *pb.RPCHeader) raft.RPCHeader {
	if h == nil {
		return raft.RPCHeader{}
	}
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersion(h.ProtocolVersion), ID: h.Id, Addr: h.Addr}
}

func encodeLog(l *raft.Log) *pb.Log {
	out := &pb.Log{}
	encodeLogTo(l, out)
	return out
}

// encodeLogTo fills a zero pb.Log.
func encodeLogTo(l *raft.Log, out *pb.Log) {
	out.Index = l.Index
	out.Term = l.Term
	out.Type = uint32(l.Type)
	out.Data = l.Data
	out.Extensions = l.Extensions
	if !l.AppendedAt.IsZero() {
		out.HasAppendedAt = true
		out.AppendedAtSeconds = l.AppendedAt.Unix()
		out.AppendedAtNanos = int32(l.AppendedAt.Nanosecond())
	}
}

func decodeLog(l *pb.Log, out *raft.Log) {
	*out = raft.Log{
		Index:      l.Index,
		Term:       l.Term,
		Type:       raft.LogType(l.Type),
		Data:       l.Data,
		Extensions: l.Extensions,
	}
	if l.HasAppendedAt {
		out.AppendedAt = time.Unix(l.AppendedAtSeconds, int64(l.AppendedAtNanos))
	}
}

func encodeAppendEntriesRequest(r *raft.AppendEntriesRequest) *pb.AppendEntriesRequest {
	out := &pb.AppendEntriesRequest{
		Header:            encodeHeader(r.RPCHeader),
		Term:              r.Term,
		Leader:            r.Leader,
		PrevLogEntry:      r.PrevLogEntry,
		PrevLogTerm:       r.PrevLogTerm,
		LeaderCommitIndex: r.LeaderCommitIndex,
	}
	if r.Entries != nil {
		// One allocation for all entries instead of one per entry.
		logs := make([]pb.Log, len(r.Entries))
		out.Entries = make([]*pb.Log, len(r.Entries))
		for i, e := range r.Entries {
			encodeLogTo(e, &logs[i])
			out.Entries[i] = &logs[i]
		}
	}
	return out
}

func decodeAppendEntriesRequest(r *pb.AppendEntriesRequest) *raft.AppendEntriesRequest {
	out := &raft.AppendEntriesRequest{
		RPCHeader:         decodeHeader(r.Header),
		Term:              r.Term,
		Leader:            r.Leader,
		PrevLogEntry:      r.PrevLogEntry,
		PrevLogTerm:       r.PrevLogTerm,
		LeaderCommitIndex: r.LeaderCommitIndex,
	}
	if len(r.Entries) > 0 {
		// One allocation for all entries instead of one per entry.
		logs := make([]raft.Log, len(r.Entries))
		out.Entries = make([]*raft.Log, len(r.Entries))
		for i, e := range r.Entries {
			decodeLog(e, &logs[i])
			out.Entries[i] = &logs[i]
		}
	}
	return out
}

func encodeAppendEntriesResponse(r *raft.AppendEntriesResponse) *pb.AppendEntriesResponse {
	return &pb.AppendEntriesResponse{
		Header:         encodeHeader(r.RPCHeader),
		Term:           r.Term,
		LastLog:        r.LastLog,
		Success:        r.Success,
		NoRetryBackoff: r.NoRetryBackoff,
	}
}

func decodeAppendEntriesResponse(r *pb.AppendEntriesResponse, out *raft.AppendEntriesResponse) {
	*out = raft.AppendEntriesResponse{
		RPCHeader:      decodeHeader(r.Header),
		Term:           r.Term,
		LastLog:        r.LastLog,
		Success:        r.Success,
		NoRetryBackoff: r.NoRetryBackoff,
	}
}

func encodeRequestVoteRequest(r *raft.RequestVoteRequest) *pb.RequestVoteRequest {
	return &pb.RequestVoteRequest{
		Header:             encodeHeader(r.RPCHeader),
		Term:               r.Term,
		Candidate:          r.Candidate,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		LeadershipTransfer: r.LeadershipTransfer,
	}
}

func decodeRequestVoteRequest(r *pb.RequestVoteRequest) *raft.RequestVoteRequest {
	return &raft.RequestVoteRequest{
		RPCHeader:          decodeHeader(r.Header),
		Term:               r.Term,
		Candidate:          r.Candidate,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		LeadershipTransfer: r.LeadershipTransfer,
	}
}

func encodeRequestVoteResponse(r *raft.RequestVoteResponse) *pb.RequestVoteResponse {
	return &pb.RequestVoteResponse{
		Header:  encodeHeader(r.RPCHeader),
		Term:    r.Term,
		Peers:   r.Peers,
		Granted: r.Granted,
	}
}

func decodeRequestVoteResponse(r *pb.RequestVoteResponse, out *raft.RequestVoteResponse) {
	*out = raft.RequestVoteResponse{
		RPCHeader: decodeHeader(r.Header),
		Term:      r.Term,
		Peers:     r.Peers,
		Granted:   r.Granted,
	}
}

func encodeRequestPreVoteRequest(r *raft.RequestPreVoteRequest) *pb.RequestPreVoteRequest {
	return &pb.RequestPreVoteRequest{
		Header:       encodeHeader(r.RPCHeader),
		Term:         r.Term,
		LastLogIndex: r.LastLogIndex,
		LastLogTerm:  r.LastLogTerm,
	}
}

func decodeRequestPreVoteRequest(r *pb.RequestPreVoteRequest) *raft.RequestPreVoteRequest {
	return &raft.RequestPreVoteRequest{
		RPCHeader:    decodeHeader(r.Header),
		Term:         r.Term,
		LastLogIndex: r.LastLogIndex,
		LastLogTerm:  r.LastLogTerm,
	}
}

func encodeRequestPreVoteResponse(r *raft.RequestPreVoteResponse) *pb.RequestPreVoteResponse {
	return &pb.RequestPreVoteResponse{
		Header:  encodeHeader(r.RPCHeader),
		Term:    r.Term,
		Granted: r.Granted,
	}
}

func decodeRequestPreVoteResponse(r *pb.RequestPreVoteResponse, out *raft.RequestPreVoteResponse) {
	*out = raft.RequestPreVoteResponse{
		RPCHeader: decodeHeader(r.Header),
		Term:      r.Term,
		Granted:   r.Granted,
	}
}

func encodeTimeoutNowRequest(r *raft.TimeoutNowRequest) *pb.TimeoutNowRequest {
	return &pb.TimeoutNowRequest{Header: encodeHeader(r.RPCHeader)}
}

func decodeTimeoutNowRequest(r *pb.TimeoutNowRequest) *raft.TimeoutNowRequest {
	return &raft.TimeoutNowRequest{RPCHeader: decodeHeader(r.Header)}
}

func encodeTimeoutNowResponse(r *raft.TimeoutNowResponse) *pb.TimeoutNowResponse {
	return &pb.TimeoutNowResponse{Header: encodeHeader(r.RPCHeader)}
}

func decodeTimeoutNowResponse(r *pb.TimeoutNowResponse, out *raft.TimeoutNowResponse) {
	*out = raft.TimeoutNowResponse{RPCHeader: decodeHeader(r.Header)}
}

func encodeInstallSnapshotRequest(r *raft.InstallSnapshotRequest) *pb.InstallSnapshotRequest {
	return &pb.InstallSnapshotRequest{
		Header:             encodeHeader(r.RPCHeader),
		SnapshotVersion:    int64(r.SnapshotVersion),
		Term:               r.Term,
		Leader:             r.Leader,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		Peers:              r.Peers,
		Configuration:      r.Configuration,
		ConfigurationIndex: r.ConfigurationIndex,
		Size:               r.Size,
	}
}

func decodeInstallSnapshotRequest(r *pb.InstallSnapshotRequest) *raft.InstallSnapshotRequest {
	return &raft.InstallSnapshotRequest{
		RPCHeader:          decodeHeader(r.Header),
		SnapshotVersion:    raft.SnapshotVersion(r.SnapshotVersion),
		Term:               r.Term,
		Leader:             r.Leader,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		Peers:              r.Peers,
		Configuration:      r.Configuration,
		ConfigurationIndex: r.ConfigurationIndex,
		Size:               r.Size,
	}
}

func encodeInstallSnapshotResponse(r *raft.InstallSnapshotResponse) *pb.InstallSnapshotResponse {
	return &pb.InstallSnapshotResponse{
		Header:  encodeHeader(r.RPCHeader),
		Term:    r.Term,
		Success: r.Success,
	}
}

func decodeInstallSnapshotResponse(r *pb.InstallSnapshotResponse, out *raft.InstallSnapshotResponse) {
	*out = raft.InstallSnapshotResponse{
		RPCHeader: decodeHeader(r.Header),
		Term:      r.Term,
		Success:   r.Success,
	}
}
