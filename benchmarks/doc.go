// Command compare measures blobgc side by side with etcd on one machine:
// a 3-server blobgc cluster (real `blobgc server` processes) and a 3-member
// etcd cluster (etcd embedded from go.etcd.io/etcd/server/v3, one process
// per member), in interleaved rounds so that background load hits both
// alike. The same load loop (package bench) drives both: blobgc through its
// Go client, etcd through clientv3.
//
// Workloads: sequential and concurrent single writes (Pin vs Put),
// 100-hash full and delta reports vs 3.2 KB puts, registrations and full
// and delta reports of 1,000 hashes a call vs 32 KB puts, and leader
// SIGKILL to the next acknowledged write. It writes results.json, results.md (medians over rounds, ratios
// blobgc/etcd) and PNG plots into --out.
//
// It lives in its own module so that the product's go.mod does not carry
// etcd. Run it through scripts/bench.sh.
package main
