package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/backup"
	"github.com/blobgc/blobgc/cluster"
)

// defaultSnapshotTimeout bounds `snapshot save` unless --timeout is given:
// a large state takes longer to stream than a request.
const defaultSnapshotTimeout = 10 * time.Minute

func snapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, inspect and restore backups of the cluster's state",
		Long: `A backup is a consistent snapshot of the state machine, taken on the leader
(with its raft index, term, cluster time and a SHA-256): "snapshot save" writes
one from a running cluster, "snapshot inspect" shows what a file holds, and
"snapshot restore" builds a new server's data dir from it. Restore every server
of the new cluster from the same file with the same --peers, then start them
with those --peers: they continue from the saved state and cluster time.`,
	}
	cmd.AddCommand(snapshotSaveCmd(), snapshotInspectCmd(), snapshotRestoreCmd())
	return cmd
}

func snapshotSaveCmd() *cobra.Command {
	cmd := clientCmd("save FILE", "Save a consistent snapshot of the cluster's state to FILE (written atomically, mode 0600)", cobra.ExactArgs(1), func(e *env, _ *cobra.Command, args []string) error {
		w, err := backup.Create(args[0])
		if err != nil {
			return err
		}
		info, sum, err := e.c.SaveSnapshot(e.ctx, func(*blobgcv1.SnapshotInfo) (io.Writer, error) { return w, w.Reset() })
		if err != nil {
			w.Abort()
			return err
		}
		h, err := w.Commit(backup.Header{Index: info.Index, Term: info.Term, ClusterTime: info.ClusterTimeNs, WallTime: info.WallTimeNs})
		if err != nil {
			return err
		}
		res := map[string]any{"file": args[0], "index": h.Index, "term": h.Term, "cluster_time_ns": h.ClusterTime,
			"size": h.Size, "sha256": hex.EncodeToString(sum), "server_id": info.ServerId}
		return e.emit(res, func(w io.Writer) {
			fmt.Fprintf(w, "Saved %s: index %d, term %d, cluster time %s, %d bytes from %s, sha256 %s\n",
				args[0], h.Index, h.Term, clusterTime(h.ClusterTime), h.Size, info.ServerId, hex.EncodeToString(sum))
		})
	})
	t := cmd.Flags().Lookup("timeout")
	_ = t.Value.Set(defaultSnapshotTimeout.String())
	t.DefValue = t.Value.String()
	return cmd
}

func snapshotInspectCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Check a backup file and print what it holds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("output format %q: want table or json", output)
			}
			h, f, err := cluster.ReadBackup(args[0])
			if err != nil {
				return err
			}
			n := f.Counts()
			nodes := f.Nodes()
			var ids []string
			for _, nd := range nodes {
				ids = append(ids, nd.ID)
			}
			counts := map[string]int{"active": n.Active, "pinned": n.Pinned, "unreferenced": n.Unreferenced,
				"marked_for_collection": n.Marked, "deleting": n.Deleting, "collected": n.Collected}
			out := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(out, map[string]any{"file": args[0], "index": h.Index, "term": h.Term,
					"cluster_time_ns": h.ClusterTime, "wall_time_ns": h.WallTime, "size": h.Size,
					"sha256": hex.EncodeToString(h.SHA256[:]), "checksum_ok": true, "blobs": counts, "nodes": ids})
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "FILE\t%s\n", args[0])
			fmt.Fprintf(tw, "INDEX\t%d\n", h.Index)
			fmt.Fprintf(tw, "TERM\t%d\n", h.Term)
			fmt.Fprintf(tw, "CLUSTER_TIME\t%s\n", clusterTime(h.ClusterTime))
			fmt.Fprintf(tw, "WALL_TIME\t%s\n", wallAge(h.WallTime))
			fmt.Fprintf(tw, "SIZE\t%d bytes\n", h.Size)
			fmt.Fprintf(tw, "SHA256\t%x (OK)\n", h.SHA256)
			fmt.Fprintf(tw, "BLOBS\tactive %d, pinned %d, unreferenced %d, marked %d, deleting %d, collected %d\n",
				n.Active, n.Pinned, n.Unreferenced, n.Marked, n.Deleting, n.Collected)
			fmt.Fprintf(tw, "NODES\t%d %s\n", len(ids), listOrDash(ids))
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table|json")
	return cmd
}

func snapshotRestoreCmd() *cobra.Command {
	var dataDir, id, peers string
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Build a new server's data dir from a backup file",
		Long: `Build the data dir of one server of a new cluster from FILE. Run it for every
server of the new cluster with the same FILE and --peers, each with its own
--id and --data-dir, then start each server with those --id, --data-dir and
--peers. The data dir must not hold raft state yet.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if id == "" || dataDir == "" || peers == "" {
				return fmt.Errorf("--id, --data-dir and --peers are required")
			}
			ps, err := cluster.ParsePeers(peers)
			if err != nil {
				return fmt.Errorf("--peers: %v", err)
			}
			h, err := cluster.RestoreDataDir(args[0], dataDir, id, ps, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Restored %s into %s for server %s: index %d, term %d, cluster time %s, %d peers.\nStart it with: blobgc server --id %s --data-dir %s --peers %s\n",
				args[0], dataDir, id, h.Index, h.Term, clusterTime(h.ClusterTime), len(ps), id, dataDir, peers)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dataDir, "data-dir", "", "the new server's data dir (required; must hold no raft state)")
	fs.StringVar(&id, "id", "", "the new server's raft id (required; one of --peers)")
	fs.StringVar(&peers, "peers", "", `the new cluster's servers "id=host:port,..." (required; the same for every server)`)
	return cmd
}
