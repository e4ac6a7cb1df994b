package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
)

func TestPrintableEscapesControlCharacters(t *testing.T) {
	for in, want := range map[string]string{
		"vm-1":        "vm-1",
		"größe ✓":     "größe ✓",
		"vm\x1b[2J":   `vm\x1b[2J`,
		"a\nb\tc\rd":  `a\nb\tc\rd`,
		"\u009b31m":   `\u009b31m`,
		"bad\xffutf8": `bad\xffutf8`,
		"\u202eevil":  `\u202eevil`,
		"del\x7f":     `del\x7f`,
		"":            "",
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
	var out bytes.Buffer
	controlEscaper{&out}.Write([]byte("ok\tcol\nbell\a esc\x1b]0;title\x07\n"))
	if got, want := out.String(), "ok\tcol\nbell\\x07 esc\\x1b]0;title\\x07\n"; got != want {
		t.Errorf("controlEscaper wrote %q, want %q", got, want)
	}
	if got := errorText(status.Error(codes.InvalidArgument, "node \x1b[31mX")); got != `InvalidArgument: node \x1b[31mX` {
		t.Errorf("errorText of a status = %q", got)
	}
	if got := errorText(errors.New("a\x1bb")); got != `a\x1bb` {
		t.Errorf("errorText = %q", got)
	}
}

// A node id with control characters, as a server supplies it, reaches the
// table output escaped, and the table keeps its rows.
func TestCLITableEscapesServerStrings(t *testing.T) {
	tc, srv := startCluster(t)
	evil := "vm\x1b[2J\nFAKE\tROW"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := tc.Client(tc.Leader()).Report(ctx, &blobgcv1.ReportRequest{NodeId: evil, Kind: blobgcv1.ReportKind_REPORT_KIND_FULL, Seq: 1})
	if status.Code(err) == codes.InvalidArgument {
		t.Skipf("the server refuses such ids itself: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, "", "nodes", srv)
	if strings.ContainsAny(out, "\x1b\r") || strings.Contains(out, "\nFAKE") {
		t.Fatalf("raw control characters in the table:\n%q", out)
	}
	if !strings.Contains(out, `vm\x1b[2J\nFAKE\tROW`) {
		t.Fatalf("escaped id missing from the table:\n%s", out)
	}
	if lines := strings.Count(out, "\n"); lines != 2 {
		t.Fatalf("table has %d lines, want a header and one row:\n%s", lines, out)
	}
}
