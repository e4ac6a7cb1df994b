package fsm

import (
	"flag"
	"os"
	"testing"
)

// TestMain raises rapid's default number of random command sequences for
// the model comparison from 100 to 1,000 (a -rapid.checks flag or the
// RAPID_CHECKS variable still wins).
func TestMain(m *testing.M) {
	flag.Parse()
	given := os.Getenv("RAPID_CHECKS") != ""
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "rapid.checks" })
	if !given {
		_ = flag.Set("rapid.checks", "1000")
	}
	os.Exit(m.Run())
}
