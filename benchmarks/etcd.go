package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// runEtcdMember is the `etcd-member` subcommand: one embedded etcd member,
// running until SIGTERM or SIGINT.
func runEtcdMember(args []string) error {
	fs := flag.NewFlagSet("etcd-member", flag.ExitOnError)
	name := fs.String("name", "", "member name")
	dir := fs.String("data-dir", "", "data directory")
	peer := fs.String("peer", "", "peer host:port")
	clientAddr := fs.String("client", "", "client host:port")
	initial := fs.String("initial-cluster", "", "name=http://host:port,...")
	fs.Parse(args)

	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = *name, *dir
	p, err := url.Parse("http://" + *peer)
	if err != nil {
		return err
	}
	c, err := url.Parse("http://" + *clientAddr)
	if err != nil {
		return err
	}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*p}, []url.URL{*p}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*c}, []url.URL{*c}
	cfg.InitialCluster = *initial
	cfg.InitialClusterToken = "compare"
	cfg.ClusterState = embed.ClusterStateFlagNew
	if _, err := os.Stat(*dir + "/member"); err == nil {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.LogLevel = "error"
	// The batched rows put about 2 GB of 32 KB values in one round: past
	// etcd's default 2 GiB quota every put fails with "database space
	// exceeded", which would measure errors, not writes.
	cfg.QuotaBackendBytes = 8 << 30
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("etcd member %s not ready after 2 minutes", *name)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-e.Err():
		return err
	}
	return nil
}

// etcdCluster is three etcd member processes.
type etcdCluster struct {
	procs
	clientAddrs []string
}

func startEtcd(dir string, basePort int) (*etcdCluster, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := 0; i < 3; i++ {
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%d", i+1, basePort+10+i))
	}
	ec := &etcdCluster{}
	for i := 0; i < 3; i++ {
		clientAddr := fmt.Sprintf("127.0.0.1:%d", basePort+i)
		ec.clientAddrs = append(ec.clientAddrs, clientAddr)
		ec.add(fmt.Sprintf("e%d", i+1), self, "etcd-member", "--name", fmt.Sprintf("e%d", i+1),
			"--data-dir", fmt.Sprintf("%s/e%d", dir, i+1), "--peer", fmt.Sprintf("127.0.0.1:%d", basePort+10+i),
			"--client", clientAddr, "--initial-cluster", strings.Join(initial, ","))
	}
	if err := ec.startAll(dir); err != nil {
		return nil, err
	}
	return ec, ec.waitLeader()
}

func (ec *etcdCluster) client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: ec.clientAddrs, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// leader returns the index of the member that leads, or -1.
func (ec *etcdCluster) leader() int {
	cl, err := ec.client()
	if err != nil {
		return -1
	}
	defer cl.Close()
	for i, a := range ec.clientAddrs {
		if ec.procs.list[i].cmd == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cl.Status(ctx, a)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return i
		}
	}
	return -1
}

func (ec *etcdCluster) waitLeader() error {
	return waitUntil(2*time.Minute, "an etcd leader", func() bool { return ec.leader() >= 0 })
}
