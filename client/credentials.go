package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// WithToken authenticates every call with a bearer token (metadata
// "authorization: Bearer <token>"). A token is a password: New refuses to
// send it without TLS unless AllowTokenWithoutTLS is given too. Client
// certificates authenticate through WithTLS instead.
func WithToken(token string) Option {
	return func(c *config) {
		c.token = strings.TrimSpace(token)
		if c.token == "" {
			c.tokenErr = errors.New("client: empty bearer token")
		}
	}
}

// WithTokenFile is WithToken with the token read from the first line of a
// file.
func WithTokenFile(path string) Option {
	return func(c *config) {
		data, err := os.ReadFile(path)
		if err != nil {
			c.tokenErr = fmt.Errorf("client: token file: %w", err)
			return
		}
		line, _, _ := strings.Cut(string(data), "\n")
		WithToken(line)(c)
		if c.tokenErr != nil {
			c.tokenErr = fmt.Errorf("client: token file %s: first line holds no token", path)
		}
	}
}

// AllowTokenWithoutTLS lets WithToken send the token in plaintext, for a
// cluster run with --insecure on a network where that is acceptable.
func AllowTokenWithoutTLS() Option { return func(c *config) { c.tokenPlaintext = true } }

// checkCredentials refuses a configuration that would leak the token.
func (c *config) checkCredentials() error {
	if c.tokenErr != nil {
		return c.tokenErr
	}
	if c.token != "" && c.tls == nil && !c.tokenPlaintext {
		return errors.New("client: refusing to send a bearer token without TLS (use WithTLS, or AllowTokenWithoutTLS for a cluster run with --insecure)")
	}
	return nil
}

// bearer is the per-call credential of WithToken.
type bearer struct {
	token      string
	requireTLS bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.requireTLS }

// explainAuth adds to an Unauthenticated error what this client sent, so
// that the person reading it knows what to fix.
func (c *Client) explainAuth(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unauthenticated {
		return err
	}
	var hint string
	switch {
	case c.cfg.token != "":
		hint = "the cluster did not accept this client's bearer token: check it, or ask an admin for a new one"
	case c.cfg.tls != nil && len(c.cfg.tls.Certificates) > 0:
		hint = "the cluster did not accept this client's certificate"
	default:
		hint = "this client sent no credentials: give it a bearer token (WithToken; CLI --token, --token-file or BLOBGC_TOKEN) or a client certificate (WithTLS; CLI --tls-cert/--tls-key)"
	}
	return status.Errorf(codes.Unauthenticated, "%s (%s)", st.Message(), hint)
}
