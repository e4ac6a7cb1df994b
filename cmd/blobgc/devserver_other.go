//go:build !linux

package main

import "syscall"

// devServerProcAttr: only Linux can tie a child's life to its parent's, so
// elsewhere a dev server outlives a dev that is killed without Ctrl-C.
func devServerProcAttr() *syscall.SysProcAttr { return nil }
