package systemtest

import (
	"github.com/blobgc/blobgc/internal/testtiming"
	"path/filepath"
	"testing"
)

// Fault timings of the process scenarios. A fault lasts several election
// timeouts (of testTimings); the cluster gets a healthy stretch between
// faults so writes are acknowledged in every round.
var (
	procHold    = 6 * testtiming.ServerElection()
	procRecover = 5 * testtiming.ServerElection()
)

// procScenarios are the process-level fault schedules.
var procScenarios = []procScenario{
	{Name: "LeaderKill", Servers: 3, Inject: leaderKill},
	{Name: "RandomKill", Servers: 3, Inject: randomKill},
	{Name: "LeaderPause", Servers: 3, Inject: leaderPause},
	{Name: "RestartAll", Servers: 3, Inject: restartAll},
	{Name: "Mixed5", Servers: 5, Inject: mixedProcs},
	// Snapshots every few dozen entries with a short log tail: restarted
	// servers restore from snapshots and lagging ones catch up by
	// InstallSnapshot instead of log replay.
	{Name: "KillWithSnapshots", Servers: 3, Inject: mixedProcs,
		Flags: []string{"--snapshot-threshold=64", "--snapshot-interval=200ms", "--trailing-logs=16"},
		After: snapshotsTaken},
}

// snapshotsTaken checks that every server did write snapshots.
func snapshotsTaken(t *testing.T, e *procEnv) {
	for _, p := range e.pc.procs {
		if m, _ := filepath.Glob(filepath.Join(p.dir, "snapshots", "*", "meta.json")); len(m) == 0 {
			t.Errorf("%s took no snapshot", p.id)
		}
	}
}

func procScenarioByName(t *testing.T, name string) procScenario {
	for _, sc := range procScenarios {
		if sc.Name == name {
			return sc
		}
	}
	t.Fatalf("no process scenario %q", name)
	return procScenario{}
}

// leaderKill SIGKILLs the leader, lets the others elect a new one and
// serve, then restarts it from its data directory.
func leaderKill(e *procEnv) {
	if l := e.WaitLeaderIndex(procHold); l >= 0 {
		e.Kill(l)
		e.Hold(procHold)
		e.Restart(l)
	}
	e.Hold(procRecover)
}

// randomKill SIGKILLs a random server (the leader or a follower) and
// restarts it from disk.
func randomKill(e *procEnv) {
	i := e.Rand.IntN(e.N())
	e.Kill(i)
	e.Hold(procHold)
	e.Restart(i)
	e.Hold(procRecover)
}

// leaderPause stops the leader with SIGSTOP for several election timeouts,
// so the others elect a new leader, then continues it: the ex-leader wakes
// up believing it leads, and must neither answer a linearizable read from
// its stale state nor grant a claim (CheckLinearizable and CheckClaims).
func leaderPause(e *procEnv) {
	if l := e.WaitLeaderIndex(procHold); l >= 0 {
		e.Pause(l)
		e.Hold(procHold)
		e.Resume(l)
	}
	e.Hold(procRecover)
}

// restartAll SIGKILLs every server at once and restarts them all from
// disk: nothing but the data directories carries the state across.
func restartAll(e *procEnv) {
	for i := range e.N() {
		e.Kill(i)
	}
	e.Hold(procHold / 3)
	for i := range e.N() {
		e.Restart(i)
	}
	e.Hold(2 * procRecover)
}

// killMinority SIGKILLs a random minority of the servers at once.
func killMinority(e *procEnv) {
	perm := e.Rand.Perm(e.N())[:(e.N()-1)/2]
	for _, i := range perm {
		e.Kill(i)
	}
	e.Hold(procHold)
	for _, i := range perm {
		e.Restart(i)
	}
	e.Hold(procRecover)
}

// mixedProcs picks one of the process faults at random each round.
func mixedProcs(e *procEnv) {
	all := []func(*procEnv){leaderKill, randomKill, leaderPause, restartAll, killMinority}
	all[e.Rand.IntN(len(all))](e)
}

func runProcScenario(t *testing.T, name string) {
	runProcChaos(t, procScenarioByName(t, name), defaultProcOpts())
}

func TestProcChaos_LeaderKill(t *testing.T)        { runProcScenario(t, "LeaderKill") }
func TestProcChaos_RandomKill(t *testing.T)        { runProcScenario(t, "RandomKill") }
func TestProcChaos_LeaderPause(t *testing.T)       { runProcScenario(t, "LeaderPause") }
func TestProcChaos_RestartAll(t *testing.T)        { runProcScenario(t, "RestartAll") }
func TestProcChaos_Mixed5(t *testing.T)            { runProcScenario(t, "Mixed5") }
func TestProcChaos_KillWithSnapshots(t *testing.T) { runProcScenario(t, "KillWithSnapshots") }
