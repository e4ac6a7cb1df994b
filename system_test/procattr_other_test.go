//go:build !linux

package systemtest

import "os/exec"

// orphanProof does nothing where the kernel cannot kill children with their
// parent; t.Cleanup still kills them.
func orphanProof(*exec.Cmd) {}

// allThreadsStopped cannot look at threads here: the signal is trusted.
func allThreadsStopped(int) bool { return true }
