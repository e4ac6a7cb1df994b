package main

import "syscall"

// devServerProcAttr puts a dev server in its own process group, so that
// Ctrl-C reaches dev alone and dev decides how its servers stop, and has the
// kernel send it SIGTERM if dev dies without stopping it (SIGKILL, a crash).
func devServerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
