// Package dockertest tests the containerised blobgc cluster the way users run
// it: the image is built by scripts/docker-image.sh (FROM scratch, the static
// binary only), the cluster is started from the repository's
// docker-compose.yml (and docker-compose.five.yml, which the script adds with
// the profile "five") through scripts/compose.sh, and it is driven from the
// host through the published 127.0.0.1 ports, by the blobgc CLI (the same
// static binary that went into the image) and by the Go client.
//
// Each test runs its own compose project (blobgc-test-<random>) on free host
// ports, so it never touches a user's cluster, and removes its containers,
// network and volumes (down -v) when it ends; the image, tagged per test run,
// is removed after the run.
//
// The servers advertise their compose service names (blobgc1:7000), which the
// host cannot resolve. The CLI copes because any server forwards calls to the
// leader; the Go client here is given a dialer that maps each service name to
// its published port, so it can follow leader hints like a client inside the
// compose network would.
//
// The scenarios, each on a fresh cluster:
//   - kill the leader, on the 3-server cluster and on the 5-server one of
//     the "five" profile (blobgc4 and blobgc5 join through the first three):
//     wait for a leader, every server a voter, only the profile's containers
//     running and only their volumes created (none of blobgc4 and blobgc5
//     for 3 servers), ports published on 127.0.0.1 only and every container
//     healthy by its own healthcheck; register and pin through the host CLI; SIGKILL
//     the leader's container (docker kill); wait for a new leader, write
//     through the CLI and read the earlier write back (on 5 servers, kill a
//     follower too and write again: two servers down); start the containers
//     again and wait until every server reports the same state digest at the
//     same applied index and the restarted ones serve the new writes;
//   - isolate the leader (docker network disconnect) and reconnect it under
//     its service name;
//   - stop the leader (docker stop: SIGTERM must reach the binary running as
//     PID 1 and end in a graceful exit 0) and restart a follower.
//
// TestComposeFiveServersMatchTheFirstThree checks, from `compose config`,
// that docker-compose.five.yml's servers are set up as the first three.
//
// BenchmarkComposeFailover measures the time from docker kill of the leader
// to the first acknowledged write, on 3 and on 5 servers.
//
// Docker is required: without it (or without Compose) the tests fail, never
// skip, so that a CI machine without Docker cannot pass by accident.
package dockertest
