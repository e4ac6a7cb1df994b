package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
)

// SaveSnapshot streams a consistent snapshot of the state from the leader.
// For each attempt it calls begin with the snapshot's info; the data goes to
// the writer begin returns, which must start empty (an attempt that failed
// half way is followed by a new call to begin). It checks the data received
// against the SHA-256 the leader sends last and returns the info and that
// checksum. The call is retried only on Unavailable (a follower answers with
// the leader's address).
func (c *Client) SaveSnapshot(ctx context.Context, begin func(*blobgcv1.SnapshotInfo) (io.Writer, error)) (*blobgcv1.SnapshotInfo, []byte, error) {
	var info *blobgcv1.SnapshotInfo
	var sum []byte
	err := c.call(ctx, "SaveSnapshot", once, func(ctx context.Context, api blobgcv1.BlobGCClient, o ...grpc.CallOption) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := api.SaveSnapshot(ctx, &blobgcv1.SaveSnapshotRequest{}, o...)
		if err != nil {
			return err
		}
		first, err := stream.Recv()
		if err != nil {
			return err
		}
		if first.GetInfo() == nil {
			return errors.New("snapshot stream does not start with its info")
		}
		w, err := begin(first.GetInfo())
		if err != nil {
			return err
		}
		h := sha256.New()
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				return errors.New("snapshot stream ended without its checksum")
			}
			if err != nil {
				return err
			}
			if m.GetSha256() != nil {
				if !bytes.Equal(m.GetSha256(), h.Sum(nil)) {
					return errors.New("snapshot data received does not match the leader's checksum")
				}
				info, sum = first.GetInfo(), m.GetSha256()
				return nil
			}
			if _, err := w.Write(m.GetData()); err != nil {
				return fmt.Errorf("writing the snapshot: %w", err)
			}
			h.Write(m.GetData())
		}
	})
	return info, sum, err
}
