package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// tokenHashPrefix starts every hash in a token file.
const tokenHashPrefix = "sha256:"

// HashToken returns how a token file stores token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return tokenHashPrefix + hex.EncodeToString(sum[:])
}

// NewToken returns a fresh bearer token: 32 random bytes, base64url.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "bgc_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// TokenLine returns the token file line for a token hash and its principal.
func TokenLine(hash string, p Principal) string {
	line := hash + " " + string(p.Role) + " " + p.Name
	if len(p.Nodes) > 0 {
		line += " " + strings.Join(p.Nodes, ",")
	}
	return line
}

// ParseTokens parses a token file (hash → principal). It lists the bearer
// tokens a server accepts, one per line:
//
//	# comments and blank lines are ignored
//	sha256:<64 hex digits>  <role>  <principal>  [<node-id>,<node-id>...]
//
// The token itself is never stored: only the hex SHA-256 of its exact text.
// Tokens are 256 random bits (NewToken), so a plain hash is enough; a leaked
// file does not reveal them. The node ids are only for role node and default
// to the principal's name. The server reads the file at start and again on
// Reload (SIGHUP); a file that does not parse leaves the previous set in use.
func ParseTokens(data []byte) (map[string]Principal, error) {
	out := map[string]Principal{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		hash, p, err := parseTokenLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if _, dup := out[hash]; dup {
			return nil, fmt.Errorf("line %d: the same token hash is listed twice", n)
		}
		out[hash] = p
	}
	return out, sc.Err()
}

func parseTokenLine(line string) (string, Principal, error) {
	f := strings.Fields(line)
	if len(f) < 3 || len(f) > 4 {
		return "", Principal{}, errors.New("want: sha256:<hex> <role> <principal> [<node-id>,...]")
	}
	hash := f[0]
	hexPart, ok := strings.CutPrefix(hash, tokenHashPrefix)
	if raw, err := hex.DecodeString(hexPart); !ok || err != nil || len(raw) != sha256.Size {
		return "", Principal{}, errors.New("the first field must be sha256: and 64 hex digits (the token's hash, never the token)")
	}
	p := Principal{Role: Role(f[1]), Name: f[2]}
	if len(f) == 4 {
		p.Nodes = strings.Split(f[3], ",")
	} else if p.Role == RoleNode {
		p.Nodes = []string{p.Name}
	}
	if err := p.Validate(); err != nil {
		return "", Principal{}, err
	}
	return strings.ToLower(hash), p, nil
}

// AppendToken adds a line for token's hash and p to the token file at path,
// creating it (mode 0600) if needed. The existing file must parse, so that a
// mistake is found now rather than at the server's next reload.
func AppendToken(path, token string, p Principal) error {
	if err := p.Validate(); err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if _, err := ParseTokens(data); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	line := TokenLine(HashToken(token), p) + "\n"
	if len(data) > 0 && data[len(data)-1] != '\n' {
		line = "\n" + line
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Tokens is the set of bearer tokens a server accepts, read from a token file
// and replaced as a whole by Reload.
type Tokens struct {
	path string
	mu   sync.RWMutex
	set  map[string]Principal
}

// LoadTokens reads the token file at path.
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if _, err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// TokenChanges counts what a Reload changed; it never names a token.
type TokenChanges struct {
	Added, Removed, Changed, Total int
}

// Reload reads the token file again and replaces the accepted set. On error
// the previous set stays in use.
func (t *Tokens) Reload() (TokenChanges, error) {
	data, err := os.ReadFile(t.path)
	if err != nil {
		return TokenChanges{}, fmt.Errorf("auth: token file: %w", err)
	}
	set, err := ParseTokens(data)
	if err != nil {
		return TokenChanges{}, fmt.Errorf("auth: token file %s: %v", t.path, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ch := TokenChanges{Total: len(set)}
	for h, p := range set {
		old, ok := t.set[h]
		switch {
		case !ok:
			ch.Added++
		case EncodePrincipal(old) != EncodePrincipal(p):
			ch.Changed++
		}
	}
	for h := range t.set {
		if _, ok := set[h]; !ok {
			ch.Removed++
		}
	}
	t.set = set
	return ch, nil
}

// Lookup returns the principal that token authenticates, if the file lists it.
func (t *Tokens) Lookup(token string) (Principal, bool) {
	h := HashToken(token)
	t.mu.RLock()
	defer t.mu.RUnlock()
	p, ok := t.set[h]
	return p, ok
}
