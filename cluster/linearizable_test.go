package cluster_test

import (
	"context"
	"math"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testtiming"
)

type pinOp struct {
	key  int
	kind int // 0 pin, 1 unpin, 2 read
}

// pinModel: each key is a register "pinned or not"; Pin and Unpin set it, a
// linearizable GetStatus reads it.
var pinModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[int][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(pinOp).key
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() interface{} { return false },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(pinOp)
		switch in.kind {
		case 0:
			return true, true
		case 1:
			return true, false
		}
		return output.(bool) == state.(bool), state
	},
	Equal: func(a, b interface{}) bool { return a == b },
}

// Concurrent clients pin, unpin and read through every server while
// leadership moves twice; porcupine checks that the history is linearizable.
// Writes that fail have an unknown outcome and are treated as possibly
// applied at any later time; failed reads are dropped.
func TestLinearizableHistoryAcrossLeaderChanges(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, testtiming.Hang())
	const keys, clients = 3, 6
	try(c.Client(c.Leader()).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, keys)})).must(t)
	servers := c.Running()
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }

	var mu sync.Mutex
	var history []porcupine.Operation
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for cl := 0; cl < clients; cl++ {
		wg.Add(1)
		go func(cl int) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(int64(cl)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				in := pinOp{key: rnd.Intn(keys), kind: rnd.Intn(3)}
				api := c.RawClient(servers[rnd.Intn(len(servers))])
				h := hashN(in.key)
				octx, cancel := context.WithTimeout(ctx, testtiming.Scaled(3*time.Second))
				call := now()
				var out interface{}
				var err error
				switch in.kind {
				case 0:
					_, err = api.Pin(octx, &pb.HashesRequest{Hashes: [][]byte{h}})
				case 1:
					_, err = api.Unpin(octx, &pb.HashesRequest{Hashes: [][]byte{h}})
				case 2:
					var st *pb.BlobStatus
					st, err = api.GetStatus(octx, &pb.GetStatusRequest{Hash: h})
					if err == nil {
						out = st.State == pb.BlobState_BLOB_STATE_PINNED
					}
				}
				ret := now()
				cancel()
				if err != nil {
					if in.kind == 2 {
						continue
					}
					ret = math.MaxInt64 // outcome unknown
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: cl, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		}(cl)
	}
	recorded := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(history)
	}
	c.Eventually(testtiming.Hang(), "history before the transfers", func() bool { return recorded() >= 150 })
	for i := 0; i < 2; i++ {
		try(c.Client(c.Leader()).TransferLeadership(ctx, &pb.TransferLeadershipRequest{})).must(t)
		c.Leader()
	}
	n := recorded()
	c.Eventually(testtiming.Hang(), "history after the transfers", func() bool { return recorded() >= n+150 })
	close(stop)
	wg.Wait()

	reads := 0
	for _, op := range history {
		if op.Input.(pinOp).kind == 2 {
			reads++
		}
	}
	if reads < 50 || len(history)-reads < 50 {
		t.Fatalf("too little history: %d reads, %d writes", reads, len(history)-reads)
	}
	if res := porcupine.CheckOperationsTimeout(pinModel, history, 30*time.Second); res != porcupine.Ok {
		t.Fatalf("history of %d operations is not linearizable (%v)", len(history), res)
	}
	t.Logf("%d operations (%d reads) linearizable", len(history), reads)
}
