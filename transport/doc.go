// Package transport is blobgc's raft.Transport for hashicorp/raft over gRPC.
//
// Each blobgc server listens on one port: the Raft gRPC service
// (transportpb) is registered with Register on the same grpc.Server as the
// client API, created with ServerOptions. Close never stops that server; it
// cancels this transport's calls and streams and fails inbound requests still
// waiting for raft with ErrTransportShutdown. The server's owner stops it
// with GracefulStop, which bounds grpc's graceful stop (it would otherwise
// wait for ever on open pipeline streams).
//
// Outbound, every peer gets two lazily created ClientConns: one carries log
// replication (AppendEntries, the pipeline stream, InstallSnapshot), the other
// heartbeats, votes, pre-votes and TimeoutNow, so a large batch or snapshot
// cannot delay a heartbeat on the same HTTP/2 connection and cost the leader
// its lease. Targets are dialed as "passthrough:///host:port" (no resolver),
// reconnect backoff is capped at one second so a restarted peer is usable at
// once, and keepalive pings detect a silently dead peer under a long stream.
//
// Every call has a deadline: Config.HeartbeatTimeout for heartbeats, votes,
// pre-votes and TimeoutNow, Config.Timeout for AppendEntries, and Timeout per
// 256 KiB for InstallSnapshot (as NetworkTransport). raft's own error strings
// travel inside the response messages, so the caller gets raft's error text
// together with the response fields; gRPC status errors mean the call itself
// failed. A peer that answers RequestPreVote with Unimplemented is reported
// as raft's "unexpected command", which raft counts as a granted pre-vote.
//
// Pipelining (AppendEntriesPipeline) uses one bidirectional stream with at
// most Config.MaxInFlight (default 2, as NetworkTransport since raft PR #541)
// unanswered requests. As in NetworkTransport, AppendEntries sends and then
// blocks while MaxInFlight are unanswered, so the next batch raft builds
// holds every entry that arrived while it waited.
// Futures complete and reach Consumer() in request order, their Response is
// never nil, and a watchdog tears the stream down when the oldest request
// waits longer than Timeout. After any stream error every pending and later
// request fails with it, so raft falls back to plain replication.
//
// Inbound, each handler decodes the request into raft's struct and passes it
// to Consumer() - heartbeats go straight to the heartbeat handler, so they
// are answered even while raft's main loop is busy - and waits for the
// answer, giving up when the caller's context ends or the transport closes.
// The pipeline handler receives and dispatches the next request while raft
// works on the current one, and sends the answers in order.
//
// Snapshots stream in 256 KiB chunks after a metadata message. The sender
// sends exactly Size bytes and fails if the data is shorter or longer; the
// receiver's reader fails on a short stream or extra data, so raft never
// installs a snapshot of the wrong size.
//
// Messages: every field of every raft message and log entry is carried (the
// completeness test fails if a raft upgrade adds one). raft batches up to
// MaxAppendEntries entries with no byte limit, and a batch over the gRPC
// message limit would be refused on every retry, so the follower would never
// catch up. The default MaxMessageSize (128 MiB) admits 64 entries of 1 MiB;
// a larger batch is split into consecutive requests that each fit (each
// pointing at the previous one's last entry, with the commit index capped so
// a follower never commits past what it has checked), on the plain and the
// pipelined path alike. A single entry over the limit fails at once: the
// application must refuse such entries before Apply. Sender and receiver
// must use the same limit (Config.MaxMessageSize and ServerOptions).
//
// Metrics: *Transport is a prometheus.Collector with calls, errors and
// latency per RPC type, inbound calls per type, and split batches.
//
// Security: with Config.TLS the transport dials peers over TLS with a client
// certificate. The shared server uses tls.VerifyClientCertIfGiven, so API
// clients may connect without a certificate, and RequirePeerCert's
// interceptors admit only callers with a certificate verified by the cluster
// CA to the Raft service. Who is a peer is the Authorizer's decision; in
// blobgc a peer is a certificate whose one URI SAN is the server identity
// spiffe://<trust-domain>/server/<id> (package auth), in the server's trust
// domain, with an id in the current raft configuration (any server
// identity while this server's configuration is empty: a fresh server
// waiting to be added). A client certificate from the same CA is not a
// peer. Every request must also name, in its raft RPC header, the source id
// its certificate names, so a member cannot speak as another; each message
// of a pipeline stream is checked again, so a stream does not outlive its
// sender's membership. Refusals are Unauthenticated (no verified
// certificate) or PermissionDenied, and reach raft never.
//
// Dialing, Config.VerifyServer checks the certificate the dialed address
// answers with against the raft id raft meant, during the handshake, so no
// request is sent to the wrong server.
//
// Every call names the raft ID it is meant for, and a transport with a
// LocalID refuses calls meant for another server: raft never checks who
// answers, and an address can come to point at a different server (a
// restarted container that was given another's old IP). The caller then
// drops its connections to that address, so the next call resolves it anew.
// A failed identity check while dialing does the same.
//
// Faults wraps transports of a test cluster with a shared table of
// partitions, black holes, delays and drop rates between addresses.
package transport
