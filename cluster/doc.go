// Package cluster is a blobgc server: hashicorp/raft wiring, the cluster
// clock and cycle scheduler, the gRPC API with forwarding and linearizable
// reads, cluster operations, health, reflection and metrics.
//
// # One listener
//
// Each server has one gRPC listener. It carries the raft transport
// (transport.Transport registered on the shared grpc.Server), the BlobGC API,
// grpc.health.v1 and server reflection. Raft's log and stable store is
// raft-boltdb (DataDir/raft.db, behind a small log cache); snapshots go to a
// file snapshot store (DataDir/snapshots, two kept). A server bootstraps only
// when raft has no state yet and a static peer set is given, and every server
// bootstraps the identical configuration; otherwise it restarts from disk, or
// joins by asking any member to add it (followers forward that to the leader).
//
// # Peers
//
// With TLS (Config.TLS), only a member's server certificate may speak raft:
// one from the cluster CA whose URI SAN is spiffe://<TrustDomain>/server/<id>
// with id in the current raft configuration (any server identity while this
// server's configuration is empty, so a fresh server can be added), and the
// raft source of every request must be that id (package transport). The
// membership is cached, re-read when a certificate names an id it lacks and
// every second, so a removed server loses access within a second. Dialing a
// peer, the server checks that the certificate names the server meant.
// peerIdentity gives handlers the same check. AddServer, Config.ID and
// Config.Peers accept only ids that fit an identity (auth.ValidName) and
// host:port addresses. Reload re-reads the certificate, key and CA files;
// new handshakes use them. Without TLS anyone who reaches the port is a
// peer: `blobgc server` runs so only with --insecure.
//
// # Leadership sessions and the cluster clock
//
// Raft's NotifyCh (buffered, drained by one goroutine, so raft never blocks)
// starts and ends a session per leadership term. A session first applies a
// term barrier: an empty command entry, which the state machine wrapper skips.
// Unlike raft.Barrier it has an index, and once it is applied every entry of
// earlier terms has been applied too. The session then reads the state
// machine's cluster time T0 and the monotonic clock M0, and stamps every
// command it proposes with T0 + (monotonic now - M0). Cluster time therefore
// advances only while a leader runs, at that leader's monotonic rate: an
// election or outage lengthens grace periods and never shortens them, and wall
// clock skew between servers plays no part. The session also proposes
// Config.GC once if the replicated configuration is still the default, and
// runs a GC cycle every CycleInterval. Writes that reach a new leader before
// its barrier has applied wait for it, bounded by their deadline.
//
// # Writes
//
// Every handler validates its request first (hash lengths, empty or oversized
// batches, enum values, node ids, configuration ranges) and answers
// InvalidArgument or ResourceExhausted with a message naming the field, so
// bad input never reaches the log. A delta report with a sequence gap or a
// duplicate sequence number is answered on the leader without a log entry
// when it is the node's only report in flight there (the leader's state then
// holds the node's latest sequence); otherwise the state machine decides.
// Likewise a Claim of hashes none of which is MARKED, a ConfirmCollected of
// hashes none of which is DELETING, and a RunCycle with no dirty blob, no
// stale node to drop and nothing eligible change nothing: the leader
// answers them from its state after a linearizable read (checking its local
// state first, so that a write that changes something goes to the log at
// once), and a flood of them writes no log entry. A cycle while blobs are
// eligible records a history event and is applied; the history drops such
// repeat events first, so a flood cannot push out the events that marked
// blobs. On
// the leader the command is stamped, encoded and applied; the state machine's
// domain errors map to gRPC codes, a delta gap to FailedPrecondition with a
// FullReportRequired detail. A write that fails after it reached raft
// (leadership lost, deadline) is reported as Unavailable or DeadlineExceeded
// with "outcome unknown": it may still commit, and every command is
// idempotent or deduplicated for that reason.
//
// # Limits
//
// Config.Limits bounds what clients can make a server hold or do, and every
// limit is checked before anything is proposed. One message limit (default
// 4 MiB) covers the API and raft on the shared listener: a larger request is
// refused with ResourceExhausted from its length prefix, before its body is
// read or buffered. raft needs no more, because the transport splits a batch
// over the limit into several AppendEntries requests and one state machine
// command is at most 1 MiB (so the limit is at least 2 MiB). Measured with
// transport's BenchmarkRaftApplyLarge (1 MB entries, 16 appliers, 3 servers
// on one 2-core machine): 28-34 MB/s with a 4 MiB limit against 29-46 MB/s
// with 128 MiB, within the run-to-run noise, while a 128 MiB limit let one
// request cost 800 MB of memory. A request carries at most MaxBatch hashes.
// The listener keeps at most MaxConnections open and closes further ones at
// once (a queued connection would wait behind whoever holds the slots),
// drops connections that do not finish their handshake in 10 s, and each
// connection carries at most MaxStreams concurrent calls. Memory held by
// requests being received is therefore bounded by MaxConnections x
// MaxStreams x the message limit; choose them together for the machine.
// Expensive reads, Digest and list pages over DefaultPageSize items, hold
// one of MaxHeavyReads slots while they compute and are refused with
// ResourceExhausted when none is free, so that they cannot take the CPU that
// raft's heartbeats need. Refused connections and reads are counted in
// blobgc_limit_refusals_total. The protobuf codec answers a malformed
// message with InvalidArgument and drops unknown fields, so a follower
// forwards only what it understood.
//
// # Forwarding
//
// A follower forwards writes, linearizable reads and membership operations to
// the leader over a cached client connection, with the caller's deadline, and
// marks the request so that the receiver never forwards it again (no loops
// while views of the leader differ). When no leader is known, or the leader
// cannot be reached, the answer is Unavailable with a LeaderHint detail. Every
// API response carries the header "blobgc-leader" with the leader's address,
// so clients can go direct.
//
// # Authentication, roles and audit
//
// Every call to the API (not health, reflection or raft, which the transport
// guards with peer certificates) passes one interceptor, before the
// leader-header one. It authenticates the caller once: a bearer token
// ("authorization: Bearer <token>") found in the token file, else a client
// certificate naming a blobgc identity (package auth). It puts the principal
// into the context and checks the one role table (auth.RolesFor); a refusal
// is PermissionDenied naming the roles needed, logged with principal and
// method, and counted in blobgc_auth_denied_total{method,role} (the caller's
// role). Rules that depend on the request are checked in the handlers: a
// node reports and deregisters only as the node ids its credential names,
// and a server calling with its own certificate may add only itself
// (joining). Authentication is on when the server has a token file or a TLS
// client CA; otherwise every caller is auth.Anonymous, an admin, and the
// server says so at start. All servers of a cluster must share one
// configuration. ReloadTokens re-reads the token file (SIGHUP).
//
// A follower forwards the principal it authenticated (metadata
// "blobgc-principal") and the caller's bearer token, if any. The leader
// believes the principal only from a verified peer: a certificate naming a
// server of the current configuration; it then authorises again. From anyone
// else the forwarding marker and principal are removed before the handlers
// run, so a client gains nothing by setting them. Without TLS there are no
// verified peers: the leader authenticates the forwarded token itself and
// the marker only prevents forwarding loops.
//
// Each command the leader proposes, and each membership change, writes a
// structured line to the logger named "audit": principal, method, a summary
// (counts and ids, never hash lists) and the result.
//
// # Reads
//
// Reads are linearizable by default, following the recipe for hashicorp/raft
// (it has no ReadIndex): on the leader, after the session's term barrier, take
// the commit index, confirm leadership in the same term, and wait until the
// state machine has processed that index. Leadership is confirmed when a
// quorum accepted AppendEntries requests sent after the round began (the
// transport records send times, transport.Ack); VerifyLeader alone is not
// enough, since it also counts answers to requests sent before a stall. The wrapper around
// the state machine tracks that index itself, because raft's AppliedIndex
// moves when entries are handed to the FSM goroutine, before they are applied,
// and the barrier entries never reach the state machine. A stale read is
// answered by whichever server receives it. A dry-run cycle is computed on the
// leader at the current cluster time.
//
// # Operations and observability
//
// Members lists the raft configuration; each member describes itself (state,
// time since it last heard from the leader, commit and applied index), asked
// in parallel by the leader, as consul's list-peers does. AddServer,
// RemoveServer and TransferLeadership run on the leader; Digest answers from
// the local state machine. Shutdown transfers leadership first when this
// server leads. The health service reports "" SERVING while the server runs
// and can write its raft log (the log store is wrapped to observe every
// append), and LeaderHealthService SERVING only on a leader whose barrier
// has applied and whose lease a quorum confirmed within LeaderLeaseTimeout,
// checked at the time of the call; the metrics listener serves /healthz and
// /readyz with the same rules (health.go). Members refuses to answer from a
// leader without a lease and never lists two leaders of different terms.
//
// # Data dir, backups and recovery
//
// Before raft.db is opened, its meta pages, size and pages are checked and
// the log is checked against the snapshots; damage is a one-line
// DataDirError, or with DiscardDamagedState the state is moved aside
// (datadir.go). SaveSnapshot streams the state machine's canonical snapshot
// from the leader after a linearizable barrier; RestoreDataDir turns such a
// backup into a raft snapshot with a new configuration and the saved term
// in a fresh data dir (backup.go). RecoverPeers replaces the configuration
// with raft.RecoverCluster, only when no quorum of the current one answers
// (recover.go).
// Metrics use a Prometheus registry per server (several servers can share a
// process); raft's own go-metrics are collected by one process-wide sink,
// since raft emits them through a global, renamed to Prometheus conventions
// (raftSink) and shown only while the process runs one server, as they
// cannot tell in-process servers apart. Every response, health checks
// included, names the leader in the LeaderHeader header, so that a client
// can ask any server cheaply whom it follows.
// With TLS configured, /metrics is served over HTTPS with the server's
// certificate.
package cluster
