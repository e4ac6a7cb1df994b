//go:build !linux

package chaos

import "os/exec"

func orphanProof(*exec.Cmd) {}
