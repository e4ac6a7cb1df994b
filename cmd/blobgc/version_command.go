package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// buildInfo is what `blobgc version` reports, from the build information
// the Go toolchain embeds: the module version (a tag, or "(devel)" for a
// build from a work tree) and the VCS commit it was built from.
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	CommitAt  string `json:"commit_time,omitempty"`
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
}

// commit is the fallback for builds the toolchain does not stamp with VCS
// information (GOFLAGS=-buildvcs=false, a git worktree): set it with
// -ldflags "-X main.commit=$(git rev-parse HEAD)", as scripts/docker-image.sh
// does.
var commit string

func readBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return buildInfo{Version: "unknown"}
	}
	out := buildInfo{Version: bi.Main.Version, GoVersion: bi.GoVersion, Commit: commit}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Commit = s.Value
		case "vcs.time":
			out.CommitAt = s.Value
		case "vcs.modified":
			out.Modified = s.Value == "true"
		}
	}
	return out
}

// String is the one-line form of --version.
func (b buildInfo) String() string {
	s := "blobgc " + b.Version
	if b.Commit != "" {
		s += ", commit " + b.Commit
		if b.Modified {
			s += " (modified)"
		}
	}
	return s + ", " + b.GoVersion
}

func versionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the build's module version and commit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := readBuildInfo()
			switch output {
			case "json":
				return writeJSON(cmd.OutOrStdout(), b)
			case "table":
				fmt.Fprintln(cmd.OutOrStdout(), b)
				return nil
			}
			return fmt.Errorf("output format %q: want table or json", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table|json")
	return cmd
}

// addVersion adds `blobgc version` and `blobgc --version`.
func addVersion(root *cobra.Command) {
	root.Version = readBuildInfo().String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(versionCmd())
}
