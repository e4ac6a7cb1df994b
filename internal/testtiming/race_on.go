//go:build race

package testtiming

// raceScale doubles every timing under the race detector, which slows code
// down several times.
const raceScale = 2.0
