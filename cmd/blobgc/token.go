package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/blobgc/blobgc/auth"
)

func tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the bearer tokens a server accepts",
		Long: `A token file lists the bearer tokens blobgc servers accept, one per line, as
the SHA-256 of the token with the principal, role and (for role node) the
node ids it may report as. Servers read it with --token-file and again on
SIGHUP. Remove a line and send SIGHUP to revoke a token.`,
	}
	var file, principal, role, nodes string
	add := &cobra.Command{
		Use:   "add",
		Short: "Make a new token, print it once and append its hash to the token file",
		Long: `Make a random token for a principal with one role, print it once on stdout and
append its hash to the token file (created with mode 0600). The token is not
stored anywhere: hand it to its holder now (a VM node reads it from a file or
BLOBGC_TOKEN). Then send SIGHUP to the servers so they accept it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("--file is required")
			}
			r, err := auth.ParseRole(role)
			if err != nil {
				return err
			}
			p := auth.Principal{Name: principal, Role: r}
			if nodes != "" {
				p.Nodes = strings.Split(nodes, ",")
			} else if r == auth.RoleNode {
				p.Nodes = []string{principal}
			}
			token, err := auth.NewToken()
			if err != nil {
				return err
			}
			if err := auth.AppendToken(file, token, p); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), token)
			fmt.Fprintf(cmd.ErrOrStderr(), "added a token for %s to %s; send SIGHUP to the servers to load it\n", p, file)
			return nil
		},
	}
	fs := add.Flags()
	fs.StringVar(&file, "file", "", "the token file (required)")
	fs.StringVar(&principal, "principal", "", "who holds the token: a person, a service or a VM node id")
	fs.StringVar(&role, "role", "", "reader|node|sweeper|operator|admin")
	fs.StringVar(&nodes, "nodes", "", "for role node: the node ids the token may report as (default: the principal)")
	cmd.AddCommand(add)
	return cmd
}
