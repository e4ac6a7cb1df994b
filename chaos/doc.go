// Package chaos is blobgc's in-process chaos suite: it runs a real cluster
// (cluster/clustertest: servers on loopback, data on disk), drives it with
// a recorded workload while injecting faults, and checks the invariants of
// DESIGN.md after every run, the way etcd's robustness tests and Jepsen do.
//
// # Workload and history
//
// Workload simulates VM nodes (full and delta reports through
// client.Reporter, with churn and node pins), operators (register, pin,
// unpin, linearizable status reads) and the sweeper package against a real
// content-addressed store on disk. Every operation goes into a History with
// monotonic invoke and return times and an outcome: OK, Failed (refused,
// so it changed nothing) or Unknown (a timeout, Unavailable, a lost
// leader: it may still commit). Unknown operations return at Infinity, so
// every checker treats them as possibly applied at any later point.
//
// # Checkers
//
//  1. CheckClaims: once a live node's report listing X, or a pin of X, was
//     acknowledged, no claim invoked afterwards grants X unless something
//     that could drop the protection (a later report without X, an Unpin,
//     of any outcome) was invoked before the claim returned. Scenarios use a
//     stale threshold longer than a run, so every reporting node is live.
//  2. Observer, CheckGraceHistory, CheckClockRate: the observer polls every
//     server's state machine; a blob seen ACTIVE or PINNED at cluster time R
//     (or UNREFERENCED since S) must not be marked before R + grace (S +
//     grace), checked against the exact cycle history; and between cycles
//     cluster time never runs ahead of wall time, so the grace also holds in
//     wall time across leader changes.
//  3. CheckNoLostWrites: acknowledged registrations, pins, unpins and each
//     node's last acknowledged report are in the converged end state,
//     unless a later operation (of any outcome) may have undone them.
//  4. CheckDigests: all servers reach one state digest at one applied index.
//  5. CheckLinearizable: pins, unpins and status reads are linearizable per
//     hash (porcupine; model: pinned bool).
//  6. CheckSweeper: every file missing from the store was granted by a claim,
//     and no deleted file's claim broke invariant 1.
//
// The observer also checks that no term has two leaders, and the package's
// TestMain checks for leaked goroutines.
//
// The suites whose servers run as processes (system_test) and containers
// (system_test/docker) use the same checkers. They read their servers over
// the API instead (wire.go: WireObserver, WireDigests, WireFinalState,
// WireLeader); the in-process Observer and the WireObserver share one
// Tracker. All three suites run the workload and observer with
// StartBackground and end a run the same way: Result.Judge runs the
// shared checks, Finish reports them and the summary row, and the external
// suites' Result.CheckRan fails a run whose checks had nothing to check.
//
// # Scenarios
//
// The same workload and checkers run against real `blobgc server`
// processes, killed with SIGKILL and paused with SIGSTOP, in the system_test
// package (TestProcChaos_<Scenario>), which reads over the API what this
// package reads from a server's memory.
//
// Scenarios lists the fault schedules (leader isolated, minority, majority
// and one-way partitions, delays, drops, crash and restart from disk, a
// mix, and none). Run executes one: a cluster of 3 or 5 servers with a 1 s
// grace period and a 150 ms cycle interval, the workload, fault rounds for
// the chosen duration, then heal, restart, convergence and all checks. The
// tests TestChaos_<Scenario> run each for 8 s by default; -chaos.duration
// (or BLOBGC_CHAOS_DURATION) makes a soak, -chaos.servers overrides the
// server count, -chaos.seed replays a schedule, and BLOBGC_CHAOS_REPORT
// names a file that collects each run's summary row (scripts/chaos.sh).
package chaos
