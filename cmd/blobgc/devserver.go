package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/blobgc/blobgc/client"
)

// devServer is one server of `blobgc dev`, run as a child process of the same
// executable (`blobgc server --dev-cluster ...`), so that each server has a
// process, and with it raft's process-wide metrics, to itself.
type devServer struct {
	id, addr, metricsAddr, dataDir string
	args                           []string

	cmd    *exec.Cmd
	out    *prefixWriter
	exited chan struct{} // closed once the process is gone; then err is set
	err    error
}

// devAnswerPoll is how often dev asks a starting server whether it serves.
const devAnswerPoll = 100 * time.Millisecond

// runDevServers starts the servers, waits until each answers or has exited,
// reports those that could not start, calls started with the others if they
// are a majority, and runs until ctx ends or every server is gone. On return
// every child has exited: each gets SIGTERM, and SIGKILL if it has not
// stopped within the shutdown deadline.
func runDevServers(ctx context.Context, stderr io.Writer, exe string, servers []*devServer, started func([]*devServer)) error {
	out := &lockedWriter{w: stderr}
	exits := make(chan *devServer, len(servers))
	var launched []*devServer
	defer func() { stopDevServers(out, launched) }()
	var failed []string
	for _, s := range servers {
		if err := s.start(exe, out, exits); err != nil {
			fmt.Fprintf(out, "server %s cannot start: %v\n", s.id, err)
			failed = append(failed, s.id)
			continue
		}
		launched = append(launched, s)
	}

	running, err := waitAnswering(ctx, launched)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil // interrupted while starting
	}
	for _, s := range launched {
		if !contains(running, s.id) {
			fmt.Fprintf(out, "server %s cannot start: %s\n", s.id, s.failure())
			failed = append(failed, s.id)
		}
	}
	if len(failed) > 0 && len(running) <= len(servers)/2 {
		return fmt.Errorf("servers %s cannot start, and the others are not a majority", strings.Join(failed, ", "))
	}
	var up []*devServer
	for _, s := range launched {
		if contains(running, s.id) {
			up = append(up, s)
		}
	}
	if started != nil {
		started(up)
	}
	left := len(up)
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-exits:
			if !contains(running, s.id) {
				continue // reported above
			}
			fmt.Fprintf(out, "server %s stopped: %s\n", s.id, s.failure())
			if left--; left == 0 {
				return errors.New("every server of the dev cluster has stopped")
			}
		}
	}
}

// start runs the server's process, its output going to out line by line
// behind its id.
func (s *devServer) start(exe string, out io.Writer, exits chan<- *devServer) error {
	s.out = &prefixWriter{prefix: s.id + " | ", w: out}
	s.cmd = exec.Command(exe, s.args...)
	s.cmd.Env = devServerEnv()
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = devServerProcAttr()
	s.exited = make(chan struct{})
	if err := s.cmd.Start(); err != nil {
		return err
	}
	go func() {
		s.err = s.cmd.Wait()
		s.out.flush()
		close(s.exited)
		exits <- s
	}()
	return nil
}

// failure says why an exited server stopped: its own error message if it
// printed one, else how the process ended.
func (s *devServer) failure() string {
	if msg := s.out.fatal(); msg != "" {
		// The server names itself; the report names it already.
		return strings.TrimPrefix(msg, "server "+s.id+": ")
	}
	if s.err != nil {
		return s.err.Error()
	}
	return "exited"
}

// devServerEnv is this process's environment without blobgc's variables:
// dev passes its servers every setting as a flag, and a server must not pick
// up a server-only setting (BLOBGC_TLS_CERT, BLOBGC_JOIN) that dev itself
// ignores.
func devServerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvPrefix) {
			env = append(env, kv)
		}
	}
	return env
}

// waitAnswering waits until every server answers a health check as serving
// or has exited, and returns the ids of those that answer. It returns early,
// with what it has, when ctx ends.
func waitAnswering(ctx context.Context, servers []*devServer) ([]string, error) {
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.addr)
	}
	if len(addrs) == 0 {
		return nil, nil
	}
	cl, err := client.New(addrs, client.WithCallTimeout(time.Second))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var mu sync.Mutex
	var answering []string
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(devAnswerPoll)
			defer tick.Stop()
			for {
				if st, err := cl.Health(ctx, s.addr, ""); err == nil && st == healthpb.HealthCheckResponse_SERVING {
					mu.Lock()
					answering = append(answering, s.id)
					mu.Unlock()
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-s.exited:
					return
				case <-tick.C:
				}
			}
		}()
	}
	wg.Wait()
	return answering, nil
}

// stopDevServers sends every server still running SIGTERM (each stops at
// once, as the whole cluster is stopping) and waits for them, killing those
// that have not exited by the deadline.
func stopDevServers(out io.Writer, servers []*devServer) {
	for _, s := range servers {
		select {
		case <-s.exited:
		default:
			if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				_ = s.cmd.Process.Kill() // no SIGTERM on this system
			}
		}
	}
	hard := time.NewTimer(shutdownTimeout + 5*time.Second)
	defer hard.Stop()
	for _, s := range servers {
		select {
		case <-s.exited:
		case <-hard.C:
			for _, k := range servers {
				select {
				case <-k.exited:
				default:
					fmt.Fprintf(out, "server %s did not stop in time; killing it\n", k.id)
					_ = k.cmd.Process.Kill()
					<-k.exited
				}
			}
			return
		}
	}
}

// lockedWriter serialises writes from several servers' output.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// prefixWriter writes each complete line behind prefix, in one Write. A
// line starting "Error: " is the server's final error (see main): it is
// kept for dev to report in its own words instead.
type prefixWriter struct {
	prefix string
	w      io.Writer

	mu      sync.Mutex
	partial []byte
	errLine string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.line(string(p.partial[:i]))
		p.partial = p.partial[i+1:]
	}
}

func (p *prefixWriter) line(l string) {
	if msg, ok := strings.CutPrefix(l, "Error: "); ok {
		p.errLine = msg
		return
	}
	_, _ = io.WriteString(p.w, p.prefix+l+"\n")
}

// flush writes out a last line that did not end in a newline.
func (p *prefixWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.partial) > 0 {
		p.line(string(p.partial))
		p.partial = nil
	}
}

func (p *prefixWriter) fatal() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errLine
}
