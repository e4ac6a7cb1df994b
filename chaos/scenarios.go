package chaos

import (
	"time"
)

// Scenarios are the in-process fault schedules, in the order they run.
// Each round injects a fault, holds it longer than an election timeout,
// heals and lets the cluster recoverFor before the next round.
var Scenarios = []Scenario{
	{Name: "LeaderIsolated", Servers: 3, Inject: leaderIsolated},
	{Name: "MinorityPartition", Servers: 3, Inject: minorityPartition},
	{Name: "MajorityPartition", Servers: 5, Inject: majorityPartition},
	{Name: "OneWayPartition", Servers: 3, Inject: oneWayPartition},
	{Name: "Delays", Servers: 3, Inject: delays},
	{Name: "Drops", Servers: 3, Inject: drops},
	{Name: "CrashRestart", Servers: 3, Inject: crashRestart},
	{Name: "Mixed", Servers: 5, Inject: mixed},
	{Name: "None", Servers: 3, Inject: none},
}

// ScenarioByName returns the scenario called name.
func ScenarioByName(name string) (Scenario, bool) {
	for _, s := range Scenarios {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

const (
	hold       = 1200 * time.Millisecond // a fault lasts this long: several election timeouts
	recoverFor = 1000 * time.Millisecond // healthy time between faults
)

// leaderIsolated cuts the leader off from every other server.
func leaderIsolated(e *Env) {
	if l := e.LeaderIndex(); l >= 0 {
		e.C.Faults.Isolate(e.Addr(l))
		e.Fault()
		e.Hold(hold)
		e.C.Faults.Heal()
	}
	e.Hold(recoverFor)
}

// split partitions side from the rest, both ways.
func split(e *Env, side []int) {
	in := map[int]bool{}
	for _, i := range side {
		in[i] = true
	}
	for _, a := range side {
		for b := range e.N() {
			if !in[b] {
				e.C.Faults.Partition(e.Addr(a), e.Addr(b))
			}
		}
	}
	e.Fault()
}

// minorityPartition cuts a random minority (leader or not) off.
func minorityPartition(e *Env) {
	perm := e.Rand.Perm(e.N())
	split(e, perm[:(e.N()-1)/2])
	e.Hold(hold)
	e.C.Faults.Heal()
	e.Hold(recoverFor)
}

// majorityPartition leaves the leader in a minority, so the majority side,
// without the leader, must elect a new one.
func majorityPartition(e *Env) {
	l := e.LeaderIndex()
	if l < 0 {
		e.Hold(recoverFor)
		return
	}
	side := []int{l}
	for _, i := range e.Rand.Perm(e.N()) {
		if len(side) < (e.N()-1)/2 && i != l {
			side = append(side, i)
		}
	}
	split(e, side)
	e.Hold(hold)
	e.C.Faults.Heal()
	e.Hold(recoverFor)
}

// oneWayPartition stops the leader's messages to every follower while the
// followers still reach it.
func oneWayPartition(e *Env) {
	if l := e.LeaderIndex(); l >= 0 {
		for i := range e.N() {
			if i != l {
				e.C.Faults.PartitionOneWay(e.Addr(l), e.Addr(i))
			}
		}
		e.Fault()
		e.Hold(hold)
		e.C.Faults.Heal()
	}
	e.Hold(recoverFor)
}

// delays slows every link by 10-120 ms (some beyond the heartbeat timeout
// once queued up).
func delays(e *Env) {
	for a := range e.N() {
		for b := range e.N() {
			if a != b {
				e.C.Faults.SetDelay(e.Addr(a), e.Addr(b), time.Duration(10+e.Rand.IntN(110))*time.Millisecond)
			}
		}
	}
	e.Fault()
	e.Hold(2 * hold)
	e.C.Faults.Heal()
	e.Hold(recoverFor)
}

// drops loses 30% of the raft messages on every link.
func drops(e *Env) {
	for a := range e.N() {
		for b := range e.N() {
			if a != b {
				e.C.Faults.SetDropRate(e.Addr(a), e.Addr(b), 0.3)
			}
		}
	}
	e.Fault()
	e.Hold(2 * hold)
	e.C.Faults.Heal()
	e.Hold(recoverFor)
}

// crashRestart kills a server (the leader every other time) and restarts it
// from its data directory.
func crashRestart(e *Env) {
	i := e.Rand.IntN(e.N())
	if l := e.LeaderIndex(); l >= 0 && e.Rand.IntN(2) == 0 {
		i = l
	}
	e.Kill(i)
	e.Hold(hold)
	e.Restart(i)
	e.Hold(recoverFor)
}

// mixed picks one of the other faults at random each round.
func mixed(e *Env) {
	all := []func(*Env){leaderIsolated, minorityPartition, majorityPartition, oneWayPartition, delays, drops, crashRestart}
	all[e.Rand.IntN(len(all))](e)
}

// none injects nothing: the baseline, and the run that shows the checkers
// catch a sabotaged sweeper.
func none(e *Env) { e.Hold(recoverFor) }
