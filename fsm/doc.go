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
// cluster time, a display-only wall time and the principal that proposed
// it, carrying one of RegisterBlobs, Pin, Unpin, Report (FULL, DELTA or
// CHUNK), DeregisterNode, RunCycle, PruneStaleNodes, Claim,
// ConfirmCollected or SetConfig. Encode validates and marshals; Apply never
// panics and always returns a *Result. An entry that does not decode or
// validate, and a command refused by the state (a delta with a sequence
// gap, a pin of a collected blob, a report beyond a limit), is answered
// with Result.Err and changes nothing but the applied index.
//
// Every write may be retried: RegisterBlobs, Pin, Unpin, Claim,
// ConfirmCollected, DeregisterNode, PruneStaleNodes and SetConfig converge
// to the same state when repeated; a repeated full report installs the same
// sets; a repeated delta sequence number or chunk is an ignored duplicate;
// and a RunCycle carrying a request id already seen among the last
// CycleRequestWindow ids returns the first run's result (Result.Duplicate,
// with Eligible listing the blobs MARKED now) instead of running again.
// Scheduled cycles carry no request id.
//
// # Provenance
//
// Each command's principal ("<role>:<name>", SchedulerPrincipal for the
// leader's scheduled cycles, empty without authentication) is recorded
// where it answers "who did this": the principal that set a blob's
// coordinator pin (kept while the pin lasts; a repeated pin keeps the
// first), that claimed a blob and when (cluster time; a repeated claim
// keeps the first), and that confirmed its deletion and when; who ran each
// recorded cycle (HistoryEvent.RunBy) and who last set the config
// (Config.SetBy). A blob's record is one small entry in an ordered set,
// with principals interned; it goes when the pin is removed, when a
// COLLECTED blob is registered again, and with its forgotten tombstone.
//
// # Limits
//
// State stays bounded whatever the clients send. A report from a node
// beyond Config.MaxNodes (counting nodes with a report or a staged chunked
// report) is refused with CodeResourceExhausted; known nodes keep
// reporting. Report node ids must be auth.ValidName (DeregisterNode and
// snapshots accept any 1..MaxNodeIDLen bytes, so that older ids can still
// leave), and sequence numbers above MaxSeq (2^64 - 2^32) are refused, so a
// forged report cannot push a node's sequence to where it wraps. Staged
// chunked reports count against MaxStagedHashesPerNode and
// MaxStagedHashesTotal (a chunk beyond either is refused), and a stage
// whose last chunk is a stale threshold old is dropped at the next command
// that succeeds: the command's cluster time decides, so every server drops
// it at the same log index.
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
// claimed. Unlike the seed, coordinator pins are kept apart from node pins
// (so unpinning a blob that a live report still pins leaves it PINNED at
// once, where the seed sets it ACTIVE until the next cycle), and a cycle that would newly mark more than MaxEligibleFraction of the
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
// entries kept in pages of 256; a removal leaves a tombstone in its slot, so
// that it touches no other entry (table.go). An entry is 56 bytes: hash,
// since, reference count, node-pin count, status and flags. A blob's id
// (shard<<24 | index) is what node sets store: each node's active and pinned
// sets are roaring bitmaps of ids rotated so that the shard is the low byte
// (idset.go), which lets a set's members share containers. Reported hashes
// that are not known blobs get an entry too (status NOT_FOUND) while some
// report holds them, so that registering them later finds their counts.
// Reference and pin counts are maintained as reports apply, so a delta costs
// O(its size) and a full report O(its size + the previous sets' size). At
// 10M blobs and 10 nodes x 500k references the heap is about 72 bytes per
// blob, references included.
//
// Whenever a blob's reference or pin count crosses zero, or it is
// registered, pinned or unpinned, it joins a dirty list (a flag in the entry
// keeps it there once). UNREFERENCED blobs sit in a FIFO ordered by since
// (non-decreasing, as cluster time is), validated lazily against the entry:
// one run of ids per cycle, since all that a cycle makes UNREFERENCED share
// its time (4 bytes a blob; the cycle's planned list becomes the run).
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
// bitmaps and the provenance set are cloned copy-on-write; history,
// tombstone and cycle-request slices are append-only and capped. Persist
// then streams from the frozen view while Apply continues: a canonical,
// versioned (2), CRC-32C checksummed format that lists blobs and node sets
// by hash, not by internal id, so equal states give equal bytes. Restore
// reads and validates the whole stream into a new state and swaps it in
// only if everything, the checksum included, is right; counts, the MARKED
// set, the FIFO, the dirty list and the digest are rebuilt from it.
// Version 1 streams still restore: the new limits take their defaults,
// there is no provenance or cycle request, tombstones are numbered afresh
// and stages count as received at the snapshot's cluster time.
//
// # Digest
//
// Digest costs O(1): the state is a set of elements (a blob or tombstone,
// a provenance record, a node's report header, each hash of a node's sets,
// a stage and each staged hash, a history event, a remembered cycle
// request), each hashed to 256 bits by elemHash (fast, not cryptographic),
// and the state keeps their sum mod 2^256, updated as elements change (a
// command's blob changes are settled when it ends). Digest hashes that sum
// with the applied index, times, config and sequence counters (SHA-256). It
// covers everything a snapshot holds, so two servers that applied the same
// log have equal digests, and states that differ through a bug or damage
// have different ones (it guards against accidents, not crafted input).
// RecomputeDigest computes the same value from scratch in O(state), to check
// the incremental one. Keeping it costs one element hash per reference
// change and two per status change.
//
// # Concurrency
//
// Apply, ApplyBatch, Snapshot and Restore take the write lock; queries,
// Digest included, take the read lock and see the state after some applied
// index.
package fsm
