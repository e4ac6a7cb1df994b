package main

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Times are shown as ages ("3m12s ago"); -o json keeps the instants.
//
// Wall-clock instants (a node's last report, a cycle's wall time) are aged
// against this machine's clock. Cluster-time instants (since when a blob is
// unreferenced) are aged against the cluster clock as of its last applied
// command (a write, a cycle), which is what the grace period runs on.

// age renders d, the time since an instant: "850ms ago", "12.3s ago",
// "3m12s ago".
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "just now"
	case d < time.Second:
		d = d.Round(time.Millisecond)
	case d < time.Minute:
		d = d.Round(100 * time.Millisecond)
	default:
		d = d.Round(time.Second)
	}
	return d.String() + " ago"
}

// wallAge is the age of a wall-clock instant (ns since the Unix epoch).
func wallAge(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return age(time.Since(time.Unix(0, ns)))
}

// clusterAge is the age of cluster-time instant ns at cluster time now.
func clusterAge(ns, now int64) string {
	if ns == 0 || now == 0 {
		return "-"
	}
	return age(time.Duration(now - ns))
}

// clusterNow returns the cluster time to age cluster-time instants against,
// or 0 (ages print as "-") when the caller may not read the stats: a VM
// node's credential may read a blob's status but not the cluster's counts.
func clusterNow(e *env) (int64, error) {
	st, err := e.c.Stats(e.ctx, e.read()...)
	if status.Code(err) == codes.PermissionDenied {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return st.ClusterTimeNs, nil
}
