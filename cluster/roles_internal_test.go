package cluster

import (
	"testing"

	"github.com/blobgc/blobgc/auth"
)

// Every method of every service the server registers has a rule in the role
// table, except the services that are open by design (health, reflection)
// or guarded by peer certificates (raft). A new RPC without a rule fails
// here (and is refused to everyone at run time).
func TestEveryMethodHasARoleRule(t *testing.T) {
	s, err := New(Config{ID: "s1", DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0", Peers: []Peer{{ID: "s1", Address: "127.0.0.1:1"}}, AdvertiseAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	guarded := 0
	for svc, info := range s.grpc.GetServiceInfo() {
		if openServices[svc] {
			continue
		}
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			roles, ok := auth.RolesFor(full)
			if !ok || len(roles) == 0 {
				t.Errorf("%s has no rule in the role table", full)
			}
			guarded++
		}
	}
	if guarded != len(auth.Methods()) {
		t.Errorf("%d guarded methods, %d rules: the table names methods the server does not serve", guarded, len(auth.Methods()))
	}
	for _, m := range auth.Methods() {
		if !auth.Allowed(m, auth.RoleAdmin) {
			t.Errorf("admin may not call %s; admin may do everything", m)
		}
	}
}
