//go:build !race

package testtiming

const raceScale = 1.0
