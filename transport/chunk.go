package transport

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// raft batches up to MaxAppendEntries log entries into one AppendEntries
// with no byte limit. A batch larger than the gRPC message limit would be
// refused with ResourceExhausted on every retry and the follower would never
// catch up, so such a batch is sent as several consecutive requests, each
// under the limit, that the follower applies one after the other.

// entryOverhead bounds the protobuf framing of one log entry beyond its
// Data and Extensions (tags, varints, timestamp).
const entryOverhead = 64

// requestOverhead bounds an AppendEntriesRequest's size without its entries
// and variable-length header fields.
const requestOverhead = 4096

func entrySize(e *raft.Log) int { return len(e.Data) + len(e.Extensions) + entryOverhead }

// splitAppend returns nil if args fits in one message of at most limit
// bytes, or else the consecutive requests to send instead: each carries a
// run of the entries, points at the previous run's last entry, and (except
// the last) caps the commit index at its own last entry so that a follower
// never commits past what it has checked against the leader's log.
func splitAppend(args *raft.AppendEntriesRequest, limit int) ([]*raft.AppendEntriesRequest, error) {
	budget := limit - requestOverhead - len(args.Leader) - len(args.ID) - len(args.Addr)
	total := 0
	for _, e := range args.Entries {
		total += entrySize(e)
	}
	if total <= budget {
		return nil, nil
	}
	var out []*raft.AppendEntriesRequest
	prevIndex, prevTerm := args.PrevLogEntry, args.PrevLogTerm
	start, size := 0, 0
	flush := func(end int) {
		chunk := *args
		chunk.Entries = args.Entries[start:end]
		chunk.PrevLogEntry, chunk.PrevLogTerm = prevIndex, prevTerm
		last := args.Entries[end-1]
		if end < len(args.Entries) {
			chunk.LeaderCommitIndex = min(args.LeaderCommitIndex, last.Index)
		}
		out = append(out, &chunk)
		prevIndex, prevTerm = last.Index, last.Term
		start, size = end, 0
	}
	for i, e := range args.Entries {
		s := entrySize(e)
		if s > budget {
			return nil, fmt.Errorf("transport: log entry %d is %d bytes, more than the message size limit %d allows", e.Index, s-entryOverhead, limit)
		}
		if size+s > budget {
			flush(i)
		}
		size += s
	}
	flush(len(args.Entries))
	return out, nil
}
