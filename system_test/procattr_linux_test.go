package systemtest

import (
	"os/exec"
	"syscall"
)

// orphanProof makes the kernel kill the server if the test process dies
// without cleaning up (a panic, a timeout, a closed pipe).
func orphanProof(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
