package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// proc is one server process of a cluster under test.
type proc struct {
	name string
	bin  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// procs starts, kills and restarts the processes of one cluster.
type procs struct {
	list   []*proc
	logDir string
}

func (ps *procs) add(name, bin string, args ...string) {
	ps.list = append(ps.list, &proc{name: name, bin: bin, args: args})
}

func (ps *procs) startAll(logDir string) error {
	ps.logDir = logDir
	for i := range ps.list {
		if err := ps.start(i); err != nil {
			ps.stopAll()
			return err
		}
	}
	return nil
}

func (ps *procs) start(i int) error {
	p := ps.list[i]
	logf, err := os.OpenFile(filepath.Join(ps.logDir, p.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The children die with this process, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

// kill sends SIGKILL to process i and waits until it is gone.
func (ps *procs) kill(i int) {
	p := ps.list[i]
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// stopAll asks every process to stop, and kills what is left after 10 s.
func (ps *procs) stopAll() {
	for _, p := range ps.list {
		if p.cmd != nil {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for i, p := range ps.list {
		if p.cmd == nil {
			continue
		}
		select {
		case <-p.done:
			p.cmd = nil
		case <-time.After(10 * time.Second):
			ps.kill(i)
		}
	}
}

func waitUntil(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
