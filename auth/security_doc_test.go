package auth

import (
	"os"
	"strings"
	"testing"
)

// roleTableMarkdown renders the role table as SECURITY.md shows it.
func roleTableMarkdown() string {
	var b strings.Builder
	b.WriteString("| method | roles |\n|---|---|\n")
	for _, m := range Methods() {
		roles, _ := RolesFor(m)
		b.WriteString("| " + m[strings.LastIndexByte(m, '/')+1:] + " | " + JoinRoles(roles) + " |\n")
	}
	return b.String()
}

// SECURITY.md shows the role table exactly as the code has it.
func TestSecurityDocRoleTable(t *testing.T) {
	doc, err := os.ReadFile("../SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := roleTableMarkdown(); !strings.Contains(string(doc), want) {
		t.Fatalf("SECURITY.md does not hold the role table; it should read:\n%s", want)
	}
}
