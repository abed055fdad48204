package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

// Version is stamped at build time with -ldflags "-X main.Version=v1.2.3";
// otherwise it comes from the module's build info.
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return "devel-" + rev + dirty
	}
	if v == "" {
		return "(devel)"
	}
	return v
}

func (m *Main) runVersion(_ context.Context, g globalFlags, args []string) error {
	fs := m.newFlagSet("version", "", &g)
	if err := parseFlags(fs, args); err != nil {
		return helpOK(err)
	}
	fmt.Fprintf(m.Stdout, "feathery %s\n", version())
	return nil
}
