package chaos

import (
	"os/exec"
	"syscall"
)

// orphanProof makes the kernel kill a server process if the test process
// dies without cleaning up.
func orphanProof(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
