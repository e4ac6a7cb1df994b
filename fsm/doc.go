// Package fsm is the replicated state machine of blobgc: the garbage
// collection state of content-addressed blobs, applied identically by every
// server from the Raft log. It is pure Go: no I/O, no clock, no randomness
// (the blob table hashes with a fixed function, so even memory layout is the
// same on every server), every list is sorted, every snapshot canonical, and
// nothing iterates a Go map into an output.
//
// # Commands and results
//
// A log entry is an fsmpb.Command (protobuf) with a version, the proposer's
// cluster time and a display-only wall time, carrying one of RegisterBlobs,
// Pin, Unpin, Report (FULL, DELTA or CHUNK), DeregisterNode, RunCycle,
// PruneStaleNodes, Claim, ConfirmCollected or SetConfig. Encode validates
// and marshals; Apply never panics and always returns a *Result. An entry
// that does not decode or validate, and a command refused by the state (a
// delta with a sequence gap, a pin of a collected blob), is answered with
// Result.Err and changes nothing but the applied index.
//
// # Time model
//
// The FSM never reads a clock. Every command carries the cluster time at
// which the leader proposed it (the cluster package stamps T0 + monotonic
// time elapsed since the leader took over at T0), and the FSM's cluster time
// is max(previous, stamped): it never goes backwards, so a leader whose
// stamp lags cannot shorten a grace period. Report timestamps,
// UNREFERENCED-since times, grace periods and stale checks all use cluster
// time, which is part of every snapshot. A command refused with an error
// does not advance it.
//
// # Reports
//
// A FULL report replaces a node's active and pinned sets and sets its
// sequence number; one older than the node's current number is refused. A
// DELTA must carry the node's number + 1: an older or equal number is an
// ignored duplicate (Result.Duplicate), a gap is refused with "send a full
// report"; removals apply before additions. A full report too large for one
// entry is sent as CHUNKs of one report_id, staged per node and swapped in
// by the chunk marked last, so no cycle sees half of it; a chunk of another
// report_id with index 0, a FULL report and DeregisterNode discard the
// stage, and retried chunks (also of an already swapped-in report) are
// ignored duplicates.
//
// # Semantics
//
// The reference is the seed coordinator: statuses move only at
// RegisterBlobs, Pin, Unpin and at a cycle; a report changes what the next
// cycle sees. A cycle drops stale reports (policy drop; policy hold keeps
// them protecting until deregistered), marks nothing below
// MinNodesReporting, and recomputes each blob as PINNED (coordinator pin or
// a live node pin), ACTIVE (a live report references it) or UNREFERENCED
// (since the first cycle that saw it so); UNREFERENCED blobs whose grace
// period expired become MARKED_FOR_COLLECTION and stay eligible until
// claimed. Unlike the seed, coordinator pins are kept apart from node pins,
// and a cycle that would newly mark more than MaxEligibleFraction of the
// known blobs marks nothing and records why. Claim grants a MARKED (or,
// idempotently, DELETING) blob only if at that point of the log no live
// report references or pins it and it has no coordinator pin; it becomes
// DELETING. ConfirmCollected turns DELETING into a COLLECTED tombstone
// (bounded, oldest forgotten first); a live report naming a DELETING or
// COLLECTED blob is a dangling reference. RegisterBlobs of a COLLECTED blob
// makes it ACTIVE again.
//
// # Data structures and costs
//
// Blobs live in a table of 256 shards selected by the first hash byte. A
// shard is an open-addressing hash table (linear probing) of uint32 slots,
// each holding an entry index and an 8-bit tag of the hash value, over
// entries kept in pages of 256. An entry is 56 bytes: hash, since, reference
// count, node-pin count, status and flags. A blob's id (shard<<24 | index)
// is what node sets store: each node's active and pinned sets are roaring
// bitmaps of ids. Reported hashes that are not known blobs get an entry too
// (status NOT_FOUND) while some report holds them, so that registering them
// later finds their counts. Reference and pin counts are maintained as
// reports apply, so a delta costs O(its size) and a full report O(its size
// + the previous sets' size). At 10M blobs and 10 nodes x 500k references
// the heap is about 85 bytes per blob, references included.
//
// Whenever a blob's reference or pin count crosses zero, or it is
// registered, pinned or unpinned, it joins a dirty list (a flag in the entry
// keeps it there once). UNREFERENCED blobs sit in a FIFO ordered by since
// (non-decreasing, as cluster time is), validated lazily against the entry.
// A cycle visits the dirty list, the sets of nodes it drops as stale, and
// the expired prefix of the FIFO; Eligible is read from an ordered set
// (google/btree) of the MARKED hashes. A cycle therefore costs O(what changed
// + what is marked), not O(known blobs). It is computed as a plan and then
// committed, which gives DryRunCycle for free. COLLECTED tombstones are
// entries too, with a FIFO that forgets the oldest beyond TombstoneLimit.
//
// # Snapshots
//
// Snapshot freezes the state in O(shards + nodes): the table generation is
// bumped, and the live table afterwards copies a shard's page list on its
// first write, a shard's slots only when an insert or delete changes them,
// and a 14 KiB page of entries when one of its entries changes. Node
// bitmaps are cloned copy-on-write; history and tombstone slices are
// append-only and capped. Persist then streams from the frozen view while
// Apply continues: a canonical, versioned, CRC-32C checksummed format that
// lists blobs and node sets by hash, not by internal id, so equal states
// give equal bytes; Digest is the SHA-256 of that stream. Restore reads and
// validates the whole stream into a new state and swaps it in only if
// everything, the checksum included, is right; counts, the MARKED set, the
// FIFO and the dirty list are rebuilt from it.
//
// # Concurrency
//
// Apply, ApplyBatch, Snapshot and Restore take the write lock; queries take
// the read lock and see the state after some applied index.
package fsm
