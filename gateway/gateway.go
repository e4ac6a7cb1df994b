package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
)

// ViaHTTPKey is the gRPC metadata key on every call the gateway makes for an
// HTTP caller. The server then authenticates the call by its bearer token
// only, never by the loopback connection's certificate. Setting it can only
// take privilege away, so it needs no protection.
const ViaHTTPKey = "blobgc-via-http"

// MaxBodyBytes bounds an HTTP request body. The largest request the API
// takes (a report of cluster.MaxBatch hashes) is about 1.4 MB of JSON.
const MaxBodyBytes = 16 << 20

// jsonMarshaler keeps the proto field names, writes every field, and
// refuses unknown fields.
var jsonMarshaler = &runtime.JSONPb{
	MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
	UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
}

// Config is what the gateway needs from its server.
type Config struct {
	// Conn is a connection to the server's own gRPC listener.
	Conn *grpc.ClientConn
	// ServerID names the answering server on the page.
	ServerID string
	// CycleInterval is how often the leader runs a GC cycle (<= 0: never),
	// to show when the next one is due.
	CycleInterval time.Duration
	// Admit authenticates an HTTP caller by its Authorization value
	// ("Bearer <token>", or "" for none) and checks that its role may open
	// page (auth.PageUI). The error is a gRPC status error.
	Admit func(ctx context.Context, authorization, page string) error
	// SecureCookies marks the login cookie Secure (the listener is HTTPS).
	SecureCookies bool
}

// Register mounts the JSON API (/v1/ and /blobgc.v1.BlobGC/) and the page
// (/ui) on mux.
func Register(mux *http.ServeMux, cfg Config) error {
	if cfg.Conn == nil || cfg.Admit == nil {
		return errors.New("gateway: Conn and Admit are required")
	}
	gw := runtime.NewServeMux(
		// Only Authorization (which grpc-gateway always passes) reaches the
		// server; no other header becomes metadata.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithMetadata(func(context.Context, *http.Request) metadata.MD {
			return metadata.Pairs(ViaHTTPKey, "1")
		}),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, jsonMarshaler),
	)
	if err := pb.RegisterBlobGCHandlerClient(context.Background(), gw, pb.NewBlobGCClient(cfg.Conn)); err != nil {
		return err
	}
	api := limitBody(gw, gw)
	mux.Handle("/v1/", api)
	mux.Handle("/"+pb.BlobGC_ServiceDesc.ServiceName+"/", api)
	page := newUI(cfg)
	mux.Handle("/ui", page)
	mux.Handle("/ui/", page)
	return nil
}

// limitBody refuses request bodies over MaxBodyBytes: ResourceExhausted
// when the declared length says so, else decoding stops at the limit
// (InvalidArgument).
func limitBody(h http.Handler, gw *runtime.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodyBytes {
			runtime.HTTPError(r.Context(), gw, jsonMarshaler, w, r, status.Errorf(codes.ResourceExhausted,
				"request body of %d bytes is over the limit of %d bytes", r.ContentLength, MaxBodyBytes))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		h.ServeHTTP(w, r)
	})
}

// callContext is ctx with the metadata of a call made for an HTTP caller
// holding authorization.
func callContext(ctx context.Context, authorization string) context.Context {
	kv := []string{ViaHTTPKey, "1"}
	if authorization != "" {
		kv = append(kv, "authorization", authorization)
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}
