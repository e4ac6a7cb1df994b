package transport

import (
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	pb "github.com/blobgc/blobgc/transport/transportpb"
)

// filler sets every field of a raft struct to a random value by reflection.
// A field of a type it does not know fails the test, and a field it fills
// but the conversion drops shows up as a diff: either way a raft upgrade
// that adds a field breaks this test until the wire format carries it.
type filler struct {
	tb  testing.TB
	rng *rand.Rand
}

var timeType = reflect.TypeOf(time.Time{})

func (f *filler) fill(v reflect.Value, path string) {
	switch {
	case v.Type() == timeType:
		switch f.rng.IntN(4) {
		case 0: // the zero time stays zero
		case 1: // far outside UnixNano's range, both ways
			v.Set(reflect.ValueOf(time.Unix(f.rng.Int64N(1<<40)-1<<39, f.rng.Int64N(1e9))))
		default:
			v.Set(reflect.ValueOf(time.Unix(f.rng.Int64N(4e9), f.rng.Int64N(1e9))))
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			sf := v.Type().Field(i)
			if !sf.IsExported() {
				f.tb.Fatalf("%s.%s: unexported field the transport cannot carry", path, sf.Name)
			}
			f.fill(v.Field(i), path+"."+sf.Name)
		}
	case reflect.Bool:
		v.SetBool(f.rng.IntN(2) == 1)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		v.SetUint(f.rng.Uint64() >> (64 - v.Type().Bits()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(f.rng.Uint64()) >> (64 - v.Type().Bits()))
	case reflect.Slice:
		n := f.rng.IntN(4)
		if v.Type().Elem().Kind() == reflect.Uint8 {
			n = f.rng.IntN(40)
		}
		if n == 0 {
			return
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			f.fill(s.Index(i), path+"[]")
		}
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		f.fill(p.Elem(), path)
		v.Set(p)
	default:
		f.tb.Fatalf("%s: field of kind %s is not covered by the conversion test", path, v.Kind())
	}
}

// wire round-trips a protobuf message through its binary encoding.
func wire[M proto.Message](tb testing.TB, m M, out M) M {
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	if err := proto.Unmarshal(b, out); err != nil {
		tb.Fatal(err)
	}
	return out
}

// roundTrips converts a randomly filled value of every raft message and back.
func roundTrips(tb testing.TB, rng *rand.Rand) {
	f := &filler{tb: tb, rng: rng}
	check := func(name string, want, got any) {
		tb.Helper()
		if d := equal(want, got); d != "" {
			tb.Fatalf("%s does not round-trip (-want +got):\n%s", name, d)
		}
	}
	{
		var in raft.AppendEntriesRequest
		f.fill(reflect.ValueOf(&in).Elem(), "AppendEntriesRequest")
		out := decodeAppendEntriesRequest(wire(tb, encodeAppendEntriesRequest(&in), &pb.AppendEntriesRequest{}))
		check("AppendEntriesRequest", &in, out)
	}
	{
		var in, out raft.AppendEntriesResponse
		f.fill(reflect.ValueOf(&in).Elem(), "AppendEntriesResponse")
		decodeAppendEntriesResponse(wire(tb, encodeAppendEntriesResponse(&in), &pb.AppendEntriesResponse{}), &out)
		check("AppendEntriesResponse", in, out)
	}
	{
		var in raft.RequestVoteRequest
		f.fill(reflect.ValueOf(&in).Elem(), "RequestVoteRequest")
		check("RequestVoteRequest", &in, decodeRequestVoteRequest(wire(tb, encodeRequestVoteRequest(&in), &pb.RequestVoteRequest{})))
	}
	{
		var in, out raft.RequestVoteResponse
		f.fill(reflect.ValueOf(&in).Elem(), "RequestVoteResponse")
		decodeRequestVoteResponse(wire(tb, encodeRequestVoteResponse(&in), &pb.RequestVoteResponse{}), &out)
		check("RequestVoteResponse", in, out)
	}
	{
		var in raft.RequestPreVoteRequest
		f.fill(reflect.ValueOf(&in).Elem(), "RequestPreVoteRequest")
		check("RequestPreVoteRequest", &in, decodeRequestPreVoteRequest(wire(tb, encodeRequestPreVoteRequest(&in), &pb.RequestPreVoteRequest{})))
	}
	{
		var in, out raft.RequestPreVoteResponse
		f.fill(reflect.ValueOf(&in).Elem(), "RequestPreVoteResponse")
		decodeRequestPreVoteResponse(wire(tb, encodeRequestPreVoteResponse(&in), &pb.RequestPreVoteResponse{}), &out)
		check("RequestPreVoteResponse", in, out)
	}
	{
		var in raft.TimeoutNowRequest
		f.fill(reflect.ValueOf(&in).Elem(), "TimeoutNowRequest")
		check("TimeoutNowRequest", &in, decodeTimeoutNowRequest(wire(tb, encodeTimeoutNowRequest(&in), &pb.TimeoutNowRequest{})))
	}
	{
		var in, out raft.TimeoutNowResponse
		f.fill(reflect.ValueOf(&in).Elem(), "TimeoutNowResponse")
		decodeTimeoutNowResponse(wire(tb, encodeTimeoutNowResponse(&in), &pb.TimeoutNowResponse{}), &out)
		check("TimeoutNowResponse", in, out)
	}
	{
		var in raft.InstallSnapshotRequest
		f.fill(reflect.ValueOf(&in).Elem(), "InstallSnapshotRequest")
		check("InstallSnapshotRequest", &in, decodeInstallSnapshotRequest(wire(tb, encodeInstallSnapshotRequest(&in), &pb.InstallSnapshotRequest{})))
	}
	{
		var in, out raft.InstallSnapshotResponse
		f.fill(reflect.ValueOf(&in).Elem(), "InstallSnapshotResponse")
		decodeInstallSnapshotResponse(wire(tb, encodeInstallSnapshotResponse(&in), &pb.InstallSnapshotResponse{}), &out)
		check("InstallSnapshotResponse", in, out)
	}
}

// FuzzConversionRoundTrip: every raft message survives encode, the wire and
// decode unchanged. The seed corpus runs as part of go test.
func FuzzConversionRoundTrip(f *testing.F) {
	for i := range 64 {
		var seed [16]byte
		binary.LittleEndian.PutUint64(seed[:], uint64(i))
		binary.LittleEndian.PutUint64(seed[8:], uint64(i)*0x9e3779b97f4a7c15)
		f.Add(seed[:])
	}
	f.Fuzz(func(t *testing.T, seed []byte) {
		var s [16]byte
		copy(s[:], seed)
		rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(s[:8]), binary.LittleEndian.Uint64(s[8:])))
		roundTrips(t, rng)
	})
}

// TestConversionCoversEveryField pins the field lists of the raft structs the
// wire format mirrors, so an upgrade that adds a field fails here with a
// readable message even if the random filler happened to leave it zero.
func TestConversionCoversEveryField(t *testing.T) {
	want := map[reflect.Type][]string{
		reflect.TypeFor[raft.RPCHeader]():               {"ProtocolVersion", "ID", "Addr"},
		reflect.TypeFor[raft.Log]():                     {"Index", "Term", "Type", "Data", "Extensions", "AppendedAt"},
		reflect.TypeFor[raft.AppendEntriesRequest]():    {"RPCHeader", "Term", "Leader", "PrevLogEntry", "PrevLogTerm", "Entries", "LeaderCommitIndex"},
		reflect.TypeFor[raft.AppendEntriesResponse]():   {"RPCHeader", "Term", "LastLog", "Success", "NoRetryBackoff"},
		reflect.TypeFor[raft.RequestVoteRequest]():      {"RPCHeader", "Term", "Candidate", "LastLogIndex", "LastLogTerm", "LeadershipTransfer"},
		reflect.TypeFor[raft.RequestVoteResponse]():     {"RPCHeader", "Term", "Peers", "Granted"},
		reflect.TypeFor[raft.RequestPreVoteRequest]():   {"RPCHeader", "Term", "LastLogIndex", "LastLogTerm"},
		reflect.TypeFor[raft.RequestPreVoteResponse]():  {"RPCHeader", "Term", "Granted"},
		reflect.TypeFor[raft.TimeoutNowRequest]():       {"RPCHeader"},
		reflect.TypeFor[raft.TimeoutNowResponse]():      {"RPCHeader"},
		reflect.TypeFor[raft.InstallSnapshotRequest]():  {"RPCHeader", "SnapshotVersion", "Term", "Leader", "LastLogIndex", "LastLogTerm", "Peers", "Configuration", "ConfigurationIndex", "Size"},
		reflect.TypeFor[raft.InstallSnapshotResponse](): {"RPCHeader", "Term", "Success"},
	}
	for typ, fields := range want {
		var got []string
		for i := 0; i < typ.NumField(); i++ {
			got = append(got, typ.Field(i).Name)
		}
		if !reflect.DeepEqual(got, fields) {
			t.Errorf("raft.%s has fields %v; the transport carries %v: extend transport.proto and convert.go", typ.Name(), got, fields)
		}
	}
}

// TestConversionFillerDetectsDroppedField proves the round-trip check can
// fail: a conversion that drops one field is caught.
func TestConversionFillerDetectsDroppedField(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	f := &filler{tb: t, rng: rng}
	caught := false
	for range 20 {
		var in raft.RequestVoteRequest
		f.fill(reflect.ValueOf(&in).Elem(), "RequestVoteRequest")
		msg := encodeRequestVoteRequest(&in)
		msg.LeadershipTransfer = false // the bug
		if equal(&in, decodeRequestVoteRequest(msg)) != "" {
			caught = true
			break
		}
	}
	if !caught {
		t.Fatal("a dropped field went unnoticed")
	}
}

func TestLogAppendedAtZeroAndEpoch(t *testing.T) {
	for _, at := range []time.Time{{}, time.Unix(0, 0), time.Unix(-1, 5), time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)} {
		in := raft.Log{Index: 1, AppendedAt: at}
		var out raft.Log
		decodeLog(wire(t, encodeLog(&in), &pb.Log{}), &out)
		if !out.AppendedAt.Equal(at) || out.AppendedAt.IsZero() != at.IsZero() {
			t.Fatalf("AppendedAt %v came back as %v", at, out.AppendedAt)
		}
	}
}
