package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenFileRoundTripAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if a == b || len(a) < 40 {
		t.Fatalf("tokens %q %q: want distinct, long", a, b)
	}
	if err := AppendToken(path, a, Principal{Name: "alice", Role: RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	if err := AppendToken(path, b, Principal{Name: "vm-1", Role: RoleNode, Nodes: []string{"vm-1", "vm-1b"}}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), a) || strings.Contains(string(data), b) {
		t.Fatal("the token file holds a token, not its hash")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", st.Mode().Perm())
	}
	ts, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := ts.Lookup(b); !ok || p.Role != RoleNode || !p.MayActAsNode("vm-1b") || p.MayActAsNode("vm-2") {
		t.Fatalf("lookup of the node token: %+v %v", p, ok)
	}
	if _, ok := ts.Lookup("bgc_guess"); ok {
		t.Fatal("an unknown token was accepted")
	}
	// Revoke alice's token: drop its line.
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if err := os.WriteFile(path, []byte(lines[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ch, err := ts.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if ch != (TokenChanges{Removed: 1, Total: 1}) {
		t.Fatalf("changes %+v", ch)
	}
	if _, ok := ts.Lookup(a); ok {
		t.Fatal("a revoked token is still accepted")
	}
	// A broken file keeps the previous set.
	os.WriteFile(path, []byte("sha256:zz admin x\n"), 0o600)
	if _, err := ts.Reload(); err == nil {
		t.Fatal("a broken file reloaded")
	}
	if _, ok := ts.Lookup(b); !ok {
		t.Fatal("a failed reload dropped the tokens in use")
	}
	if err := AppendToken(path, a, Principal{Name: "alice", Role: RoleAdmin}); err == nil {
		t.Fatal("appended to a token file that does not parse")
	}
}

func TestTokenFileRefuses(t *testing.T) {
	h := HashToken("x")
	for name, line := range map[string]string{
		"raw token":           "bgc_abc admin alice",
		"short hash":          "sha256:abcd admin alice",
		"unknown role":        h + " root alice",
		"server role":         h + " server s1",
		"bad name":            h + " admin al\x1bice",
		"nodes for a reader":  h + " reader bob vm-1",
		"bad node id":         h + " node vm-1 vm-1,vm 2",
		"too many fields":     h + " node vm-1 vm-1 extra",
		"missing the name":    h + " admin",
		"same token twice":    h + " admin a\n" + h + " reader b",
		"control in node ids": h + " node vm-1 vm-\x07",
	} {
		if _, err := ParseTokens([]byte(line)); err == nil {
			t.Errorf("%s: %q parsed", name, line)
		} else if strings.Contains(err.Error(), "bgc_abc") {
			t.Errorf("%s: the error repeats the token: %v", name, err)
		}
	}
	got, err := ParseTokens([]byte("# comment\n\n" + h + " node vm-7\n"))
	if err != nil || len(got) != 1 || got[h].Nodes[0] != "vm-7" {
		t.Fatalf("node ids default to the principal: %+v %v", got, err)
	}
}

func TestPrincipalEncoding(t *testing.T) {
	for _, p := range []Principal{
		{Name: "alice", Role: RoleAdmin},
		{Name: "vm-1", Role: RoleNode, Nodes: []string{"vm-1", "vm-2"}},
		{Name: "s2", Role: RoleServer},
		Anonymous,
	} {
		got, err := DecodePrincipal(EncodePrincipal(p))
		if err != nil || EncodePrincipal(got) != EncodePrincipal(p) {
			t.Fatalf("%+v: %+v %v", p, got, err)
		}
	}
	for _, s := range []string{"", "admin", "root:alice", "admin:al:ice:x", "reader:bob:vm-1", "node:vm-1", "server:s1:x", "admin:a,b"} {
		if _, err := DecodePrincipal(s); err == nil {
			t.Errorf("%q decoded", s)
		}
	}
}
