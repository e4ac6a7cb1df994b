// Command blobgc is the one binary of blobgc: it runs a server, a local
// 3-server development cluster, and the operator commands.
//
//	blobgc server --id s1 --data-dir /var/lib/blobgc --listen 10.0.0.1:7001 \
//	    --peers s1=10.0.0.1:7001,s2=10.0.0.2:7001,s3=10.0.0.3:7001
//	blobgc dev
//	blobgc register 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	blobgc status 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	blobgc members
//
// Design:
//
//   - The command tree is built by newRoot with injectable streams, so tests
//     run the real CLI in-process against in-process clusters.
//   - Every flag can also be set in the environment as BLOBGC_<FLAG>, dashes
//     as underscores (BLOBGC_SERVERS, BLOBGC_DATA_DIR, BLOBGC_OUTPUT, ...); a
//     flag given on the command line wins. One generic rule instead of a
//     binding per flag keeps flags and variables from drifting apart.
//   - `server` maps its flags one to one onto cluster.Config. The GC flags
//     (--grace-period, ...) are the initial replicated configuration: they
//     are proposed only if one of them is given, and only by the first leader
//     of a new cluster; later changes go through `blobgc config set`.
//     SIGINT and SIGTERM shut the server down gracefully (a leader hands
//     leadership over first).
//   - `dev` runs three servers, each as a child process of the same
//     executable (`blobgc server --dev-cluster`), so each has raft's
//     process-wide metrics to itself; their output comes out of dev behind
//     their ids. On Ctrl-C dev sends them SIGTERM and they simply close,
//     since handing leadership to a server that is stopping too is
//     pointless; on Linux they get SIGTERM too if dev dies.
//   - Client commands use the client package, so they find the leader and
//     retry across elections like any VM node. They print human tables
//     (text/tabwriter) by default and JSON with -o json: hashes as 64 hex
//     characters, enums by their short names (ACTIVE, HOLD), every field
//     present. Hashes are read from arguments, from --file, or from stdin
//     with "-", one per line; a bad hash names its position.
//   - `snapshot save|inspect|restore` back up a running cluster to a file
//     (package backup) and build new servers' data dirs from one.
//   - Errors go to stderr as "Error: Code: message". Exit statuses follow
//     etcdctl: 1 the command failed, 2 no server answered (the message lists
//     every address tried), 3 the request was accepted but had no effect a
//     script asked for (a claim granted nothing, a confirm left blobs
//     unconfirmed, deregistering an unknown node); the message says why,
//     blob by blob. Empty lists say so on stderr and exit 0, like kubectl.
//   - Times print as ages ("3m12s ago"); -o json keeps the instants.
//   - Commands live one group per file (<name>_command.go), as etcdctl's do.
package main
