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
// holds the node's latest sequence); otherwise the state machine decides. On
// the leader the command is stamped, encoded and applied; the state machine's
// domain errors map to gRPC codes, a delta gap to FailedPrecondition with a
// FullReportRequired detail. A write that fails after it reached raft
// (leadership lost, deadline) is reported as Unavailable or DeadlineExceeded
// with "outcome unknown": it may still commit, and every command is
// idempotent or deduplicated for that reason.
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
// # Reads
//
// Reads are linearizable by default, following the recipe for hashicorp/raft
// (it has no ReadIndex): on the leader, after the session's term barrier, take
// the commit index, confirm leadership with VerifyLeader in the same term, and
// wait until the state machine has processed that index. The wrapper around
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
// since raft emits them through a global.
package cluster
