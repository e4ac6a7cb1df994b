// Package client is the Go client of a blobgc cluster: what a VM node, a
// sweeper or an operator tool embeds.
//
// # Routing
//
// A Client holds one gRPC connection per server address. It sends every call
// to the server it believes is the leader, learned from the "blobgc-leader"
// response header that every server sets, or from the LeaderHint detail of an
// Unavailable error. Until it knows a leader it round-robins over the servers,
// starting at a random one so that clients do not all retry the same server,
// and skipping for a second any suspect server: one that refused the
// connection or let an attempt time out without a word (followers keep
// naming a crashed or frozen leader until they notice it is gone). While an
// attempt on the leader waits for its answer, the client asks another server
// every 250 ms (a health check, answered locally) whom it follows; when it
// names a new leader the client can reach, the attempt is abandoned and
// retried there (attempts on followers are left alone: a follower abandons
// its forward to a replaced leader by itself), so a write to a frozen
// leader reaches its successor shortly after the election instead of after
// the call timeout. A call that no server answers fails with an
// *UnreachableError naming every address tried: at its deadline, or after
// the dial timeout (WithDialTimeout) when one is set. Any server
// accepts any call (followers forward writes and linearizable reads to the
// leader), so going to the leader only saves a hop. Stale reads (the Stale
// option) are spread round-robin over all servers, since any of them may
// answer one from its own state.
//
// # Retries
//
// A call is retried, on another server if need be, with exponential backoff
// and jitter, until it succeeds, fails for good, or the caller's context (or,
// without a deadline, the client's retry budget) ends. Which errors are
// retried depends on whether the operation may safely run twice:
//
//   - Unavailable is retried for every operation. A server answers it when it
//     has no leader to forward to, when leadership was lost while a write was
//     in flight (outcome unknown), and the connection layer answers it when a
//     server is down.
//   - DeadlineExceeded of one attempt (the per-call timeout, 2 s by default,
//     while the caller's context is still live) is an unknown outcome too; it
//     is retried for reads and for idempotent writes. The per-call timeout is
//     what gets a client past a frozen leader (a paused process keeps its
//     connections open and answers nothing): the next attempt goes to
//     another server, which by then follows the new leader. Every blobgc write is idempotent or
//     deduplicated: registering, pinning, unpinning, claiming, confirming and
//     deregistering converge to the same state when repeated; a full report
//     replaces the sets with the same sets; a repeated delta sequence number
//     and a repeated chunk are recognised and ignored; membership changes are
//     no-ops when already done; RunCycle carries a random request id per
//     call, reused by its retries, and the cluster runs one cycle per id.
//     TransferLeadership is not idempotent (a repeat moves leadership
//     again), so it is retried only on Unavailable (a second transfer is
//     harmless), and its one attempt may take the caller's whole deadline.
//   - InvalidArgument, FailedPrecondition, ResourceExhausted, NotFound and
//     every other code are never retried: the request itself is wrong, or the
//     state does not allow it, and repeating it cannot help.
//
// # Batches and reports
//
// Hash batches larger than the server's per-request limit (MaxBatch) are
// split into several requests; each is atomic, the whole is not. A Reporter
// keeps one VM node's active and pinned sets and its delta sequence number:
// Full sends the sets (in chunks with one report id when they are large, so
// the cluster swaps them in atomically), Delta sends changes, and when the
// cluster refuses a delta (a sequence gap, or no earlier report) the Reporter
// sends a full report of the sets it keeps instead, without bothering the
// caller.
package client
