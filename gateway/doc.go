// Package gateway is blobgc's HTTP face, served on a server's HTTP listener
// beside /metrics: the BlobGC API as JSON (under /v1/, routes in
// api/blobgc/v1/blobgc_http.yaml, described by blobgc.swagger.json) and the
// operator's page at /ui.
//
// # Every call goes through gRPC
//
// The JSON API is grpc-gateway's generated handler registered with
// RegisterBlobGCHandlerClient over a loopback gRPC connection to the
// server's own gRPC listener, as etcd mounts its gateway. Each HTTP request
// therefore becomes an ordinary gRPC call, and every interceptor runs for it:
// authentication, the role table, the leader header (returned as the HTTP
// header Grpc-Metadata-Blobgc-Leader), forwarding to the leader. The
// in-process registration (RegisterBlobGCHandlerServer) would skip them all.
// The page reads through the same connection with the caller's credentials,
// so it shows only what the caller may read.
//
// # Who the HTTP caller is
//
// With TLS the loopback connection presents the server's own certificate, so
// it must not speak for the HTTP caller: every call the gateway makes carries
// the metadata key ViaHTTPKey, and the server then ignores the connection's
// certificate and believes only the caller's bearer token. The gateway
// passes the HTTP Authorization header through as the authorization
// metadata and no other header (a Grpc-Metadata-* header could otherwise
// name a forwarded principal). Client certificates therefore do not
// authenticate over HTTP: use a bearer token. The page accepts the token in
// the Authorization header too, or from its login form, which keeps it in an
// HttpOnly, SameSite=Strict cookie; the JSON API never reads the cookie, so
// another site cannot make a browser call it.
//
// # Errors
//
// A failed call answers with the HTTP status grpc-gateway maps its gRPC code
// to and a JSON google.rpc.Status: {"code": <gRPC code>, "message": "...",
// "details": [...]}. Request bodies are decoded strictly: an unknown field
// is InvalidArgument, not ignored; a body over MaxBodyBytes is
// ResourceExhausted. Hashes are bytes, so JSON carries them in
// base64 (standard or URL-safe; in a URL path, URL-safe).
package gateway
