// Package systemtest tests blobgc as users run it: the blobgc binary is
// built once per test run, and each test starts three `blobgc server`
// processes on free loopback ports with their own data directories, then
// drives them through the Go client. Processes are killed with SIGKILL to
// test failover and restarted from their data to test durability; every
// process is killed when its test ends.
//
// The benchmarks (bench_test.go) measure leader failover (SIGKILL of the
// leader process to the first acknowledged write) and pin throughput with 1
// and 64 concurrent clients against real processes.
//
// hostile_test.go attacks a cluster of processes as a hostile client would
// (oversized and malformed messages, unfinished chunked reports, floods of
// node ids, cycles, claims, streams and connections) and checks that it
// keeps its leader, bounded memory and every acknowledged write of a
// well-behaved client; BenchmarkHostileP99 measures that client's p99
// latency quiet and under each attack.
package systemtest
