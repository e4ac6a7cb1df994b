package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/status"
)

// EnvPrefix prefixes the environment variable of every flag.
const EnvPrefix = "BLOBGC_"

// newRoot builds the command tree. Tests run it in-process with their own
// streams.
func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "blobgc",
		Short: "Raft-replicated garbage-collection coordinator for content-addressed blobs",
		Long: `blobgc tracks which content-addressed blobs a fleet of VM nodes still uses and
tells a sweeper which ones it may delete, from a cluster of 3 or 5 servers.

Run a server with "blobgc server", a local 3-server cluster with "blobgc dev",
and talk to a cluster with the other commands. Every flag can also be set in
the environment as BLOBGC_<FLAG> (dashes as underscores), e.g. BLOBGC_SERVERS.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags())
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(serverCmd(), devCmd(), benchCmd(), tokenCmd(), tlsCmd(), snapshotCmd())
	addClientCommands(root)
	addVersion(root)
	return root
}

// envName returns the environment variable of a flag.
func envName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if set.
func applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q: %v", envName(f.Name), v, e)
		}
	})
	return err
}

// errorText renders an error for a person: a gRPC status as "Code: message".
func errorText(err error) string {
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", s.Code(), printable(s.Message()))
	}
	return printable(err.Error())
}
