package auth

import (
	"context"
	"crypto/x509"
	"net/url"
	"testing"
)

func TestIdentityURIRoundTrip(t *testing.T) {
	for _, id := range []Identity{
		ServerIdentity("blobgc", "s1"),
		ClientIdentity("prod.example", RoleNode, "vm-17"),
		ClientIdentity("blobgc", RoleAdmin, "alice"),
	} {
		got, err := ParseURI(id.URI())
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if got.String() != id.String() || got.IsServer() != id.IsServer() {
			t.Fatalf("round trip of %s gave %s", id, got)
		}
	}
}

func TestParseURIRefuses(t *testing.T) {
	for _, s := range []string{
		"https://blobgc/server/s1",
		"spiffe:///server/s1",
		"spiffe://blobgc/server",
		"spiffe://blobgc/server/",
		"spiffe://blobgc/server/a/b",
		"spiffe://blobgc/root/alice",
		"spiffe://blobgc/node/vm%0a1",
		"spiffe://blobgc/node/vm-1?x=1",
		"spiffe://blobgc:8/node/vm-1",
	} {
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		if id, err := ParseURI(u); err == nil {
			t.Errorf("ParseURI(%q) = %s, want an error", s, id)
		}
	}
}

func TestFromCertificateWantsExactlyOneURIInTheTrustDomain(t *testing.T) {
	srv := ServerIdentity("blobgc", "s1").URI()
	other := ServerIdentity("elsewhere", "s2").URI()
	cli := ClientIdentity("blobgc", RoleReader, "r").URI()
	cases := []struct {
		uris []*url.URL
		ok   bool
	}{
		{nil, false},
		{[]*url.URL{other}, false},
		{[]*url.URL{srv}, true},
		{[]*url.URL{other, srv}, true},
		{[]*url.URL{srv, cli}, false},
	}
	for i, c := range cases {
		_, err := FromCertificate(&x509.Certificate{URIs: c.uris}, "blobgc")
		if (err == nil) != c.ok {
			t.Errorf("case %d: err = %v, want ok=%v", i, err, c.ok)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, s := range []string{"vm-1", "s1", "a.b_c-d", "0"} {
		if err := ValidName(s); err != nil {
			t.Errorf("ValidName(%q) = %v", s, err)
		}
	}
	long := make([]byte, MaxNameLen+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, s := range []string{"", "-x", "a b", "a\x1b[2J", "é", string(long), "a/b"} {
		if ValidName(s) == nil {
			t.Errorf("ValidName(%q) = nil, want an error", s)
		}
	}
}

func TestPrincipal(t *testing.T) {
	p := PrincipalOf(ClientIdentity("blobgc", RoleNode, "vm-1"))
	if !p.MayActAsNode("vm-1") || p.MayActAsNode("vm-2") {
		t.Fatalf("node principal %v: wrong node rights", p)
	}
	if PrincipalOf(ClientIdentity("blobgc", RoleOperator, "op")).MayActAsNode("vm-1") {
		t.Fatal("an operator may not report as a node")
	}
	if !(Principal{Name: "root", Role: RoleAdmin}).MayActAsNode("vm-1") {
		t.Fatal("an admin may act as any node")
	}
	ctx := NewContext(context.Background(), p)
	if got, ok := FromContext(ctx); !ok || got.String() != "node:vm-1" {
		t.Fatalf("FromContext = %v, %v", got, ok)
	}
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("empty context carries a principal")
	}
}
