//go:build race

package main

// raceEnabled: the test binary was built with -race; buildBinary builds the
// command the same way so it reuses the compiled packages.
const raceEnabled = true
