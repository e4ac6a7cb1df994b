package main

import (
	"errors"
	"fmt"

	"github.com/blobgc/blobgc/client"
)

// Exit statuses, after etcdctl's: a script can tell a request the cluster
// refused from a cluster it could not reach, and from a request that was
// accepted but did nothing it could act on.
const (
	exitOK = 0
	// exitError: the command failed (bad input, or the cluster refused the
	// request); stderr says why.
	exitError = 1
	// exitUnreachable: no server answered (etcdctl's ExitBadConnection).
	exitUnreachable = 2
	// exitNoEffect: the cluster accepted the request but it changed nothing
	// the command exists for: `claim` was granted nothing, `confirm` left
	// blobs unconfirmed, `nodes deregister` named no registered node.
	exitNoEffect = 3
)

// noEffectError reports a request that changed nothing; its message says why.
type noEffectError struct{ msg string }

func (e *noEffectError) Error() string { return e.msg }

func noEffect(format string, args ...any) error {
	return &noEffectError{msg: fmt.Sprintf(format, args...)}
}

// exitCode maps a command's error to the process exit status.
func exitCode(err error) int {
	var ne *noEffectError
	var ue *client.UnreachableError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ne):
		return exitNoEffect
	case errors.As(err, &ue):
		return exitUnreachable
	}
	return exitError
}

// withServersHint adds to an error that no server answered where the
// addresses come from.
func withServersHint(err error) error {
	var ue *client.UnreachableError
	if errors.As(err, &ue) {
		return fmt.Errorf("%w; set --servers or %s to the cluster's addresses", err, envName("servers"))
	}
	return err
}
