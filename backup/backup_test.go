package backup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteVerifyAndDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.snap")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("half of a first attempt"))
	if err := w.Reset(); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("the snapshot stream"))
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the file exists before Commit: %v", err)
	}
	h, err := w.Commit(Header{Index: 7, Term: 3, ClusterTime: 42, WallTime: 9})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(path)
	if err != nil || got != h || got.Index != 7 || got.Term != 3 || got.ClusterTime != 42 || got.Size != uint64(len("the snapshot stream")) {
		t.Fatalf("Verify = %+v, %v; committed %+v", got, err, h)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(path + "*.tmp-*"); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}

	b, _ := os.ReadFile(path)
	for name, damage := range map[string]struct {
		data []byte
		want string
	}{
		"flipped":   {append(append([]byte(nil), b[:len(b)-1]...), b[len(b)-1]^1), "checksum"},
		"truncated": {b[:len(b)-3], "truncated"},
		"foreign":   {[]byte("not a backup at all, but long enough to hold a header of 84 bytes......................."), "bad magic"},
	} {
		p := filepath.Join(t.TempDir(), name)
		os.WriteFile(p, damage.data, 0o600)
		if _, err := Verify(p); err == nil || !strings.Contains(err.Error(), damage.want) {
			t.Errorf("%s: Verify = %v, want an error about %q", name, err, damage.want)
		}
	}
}
