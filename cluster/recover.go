package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/blobgc/blobgc/fsm"
)

// Recovery after losing quorum for good (say 2 of 3 servers are gone): the
// survivors are stopped, and each is started once with the same list of
// survivors (Config.RecoverPeers, from a peers.json file). Before raft
// starts, the server reads its current configuration and asks each of its
// other voters for their health, for RecoverProbeTimeout. If a majority of
// that configuration (this server included) answers, the cluster is not
// lost and recovery is refused: remove the dead servers with RemoveServer
// instead. Otherwise raft.RecoverCluster rewrites the local raft state with
// the new configuration (applying everything in the local log: entries that
// were never committed may become committed), and the server logs what it
// did. Starting again with the same list, once the configuration already is
// that list, does nothing.

// DefaultRecoverProbeTimeout is how long a recovery tries to reach the
// servers of the old configuration before deciding they are gone.
const DefaultRecoverProbeTimeout = 10 * time.Second

// ReadPeersFile reads a recovery configuration in raft's peers.json format:
// [{"id": "s1", "address": "10.0.0.1:7001", "non_voter": false}, ...].
// Every listed server becomes a voter.
func ReadPeersFile(path string) ([]Peer, error) {
	conf, err := raft.ReadConfigJSON(path)
	if err != nil {
		return nil, err
	}
	var peers []Peer
	for _, s := range conf.Servers {
		if s.Suffrage != raft.Voter {
			return nil, fmt.Errorf("%s: server %s: recovery takes voters only", path, s.ID)
		}
		peers = append(peers, Peer{ID: string(s.ID), Address: string(s.Address)})
	}
	if len(peers) == 0 {
		return nil, fmt.Errorf("%s: no servers listed", path)
	}
	return peers, nil
}

func peersConfiguration(peers []Peer) raft.Configuration {
	var conf raft.Configuration
	for _, p := range peers {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address)})
	}
	return conf
}

// recoverCluster runs before raft starts, when Config.RecoverPeers is set.
func (s *Server) recoverCluster(rc *raft.Config, logs raft.LogStore, stable raft.StableStore) error {
	newConf := peersConfiguration(s.cfg.RecoverPeers)
	if !slices.ContainsFunc(s.cfg.RecoverPeers, func(p Peer) bool { return p.ID == s.cfg.ID }) {
		return fmt.Errorf("cluster: recover: this server (%s) is not in the recovery peers", s.cfg.ID)
	}
	probe := *rc // GetConfiguration marks the config it is given
	_, trans := raft.NewInmemTransport("")
	old, err := raft.GetConfiguration(&probe, newReplicated(fsm.New()), logs, stable, s.snaps, trans)
	if err != nil {
		return fmt.Errorf("cluster: recover: reading the current configuration: %w", err)
	}
	if len(old.Servers) == 0 {
		return fmt.Errorf("cluster: recover: this server has no raft state to recover; start it with --peers or --join instead")
	}
	if sameVoters(old, newConf) {
		s.log.Info("the raft configuration already is the recovery configuration; nothing to recover", "servers", describeConf(newConf))
		return nil
	}

	voters, reached := 0, []string{}
	var unreached []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, srv := range old.Servers {
		if srv.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(srv.ID) == s.cfg.ID {
			reached = append(reached, string(srv.ID))
			continue
		}
		wg.Add(1)
		go func(srv raft.Server) {
			defer wg.Done()
			ok := s.reachable(string(srv.Address), s.cfg.RecoverProbeTimeout)
			mu.Lock()
			if ok {
				reached = append(reached, string(srv.ID))
			} else {
				unreached = append(unreached, string(srv.ID))
			}
			mu.Unlock()
		}(srv)
	}
	wg.Wait()
	if len(reached) > voters/2 {
		return fmt.Errorf("cluster: refusing to recover: %d of the %d voters of the current configuration answer (%s), a quorum: the cluster is not lost; remove dead servers with `blobgc remove` instead",
			len(reached), voters, strings.Join(reached, ", "))
	}
	if err := raft.RecoverCluster(rc, newReplicated(fsm.New()), logs, stable, s.snaps, s.trans, newConf); err != nil {
		return fmt.Errorf("cluster: recover: %w", err)
	}
	s.log.Warn("RECOVERED from lost quorum: the raft configuration was replaced; entries this server had logged but not seen committed are now part of the state",
		"old_configuration", describeConf(old), "unreachable", strings.Join(unreached, ","), "new_configuration", describeConf(newConf))
	return nil
}

// reachable reports whether the server at addr answers a health check
// (any answer but an unreachable one) within timeout.
func (s *Server) reachable(addr string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		cc, err := s.conns.get(addr)
		if err == nil {
			actx, acancel := context.WithTimeout(ctx, time.Second)
			_, err = healthpb.NewHealthClient(cc).Check(actx, &healthpb.HealthCheckRequest{})
			acancel()
			if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func sameVoters(a, b raft.Configuration) bool {
	key := func(c raft.Configuration) []string {
		var out []string
		for _, s := range c.Servers {
			if s.Suffrage == raft.Voter {
				out = append(out, string(s.ID)+"="+string(s.Address))
			}
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

func describeConf(c raft.Configuration) string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, fmt.Sprintf("%s=%s(%s)", s.ID, s.Address, s.Suffrage))
	}
	return strings.Join(out, ",")
}
