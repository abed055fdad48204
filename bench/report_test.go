package bench

import "testing"

func TestSplitCommands(t *testing.T) {
	before := map[string]CommandStat{
		"evalsha":    {Calls: 10, Usec: 1000},
		"xreadgroup": {Calls: 5, Usec: 100},
		"xadd":       {Calls: 40, Usec: 400}, // run by the script: counted in it
	}
	after := map[string]CommandStat{
		"evalsha":    {Calls: 110, Usec: 5000},
		"fcall":      {Calls: 20, Usec: 1000}, // new since before
		"xreadgroup": {Calls: 55, Usec: 600},
		"xack":       {Calls: 50, Usec: 400},
		"xadd":       {Calls: 1040, Usec: 4400},
		"hget":       {Calls: 9, Usec: 9},
	}
	got := splitCommands(before, after, 1000)
	want := RedisCommands{
		ScriptCalls: 120, EventsPerScriptCall: 1000.0 / 120, ScriptMicrosPerEvent: 5.0,
		ReaderCalls: 100, ReaderMicrosPerEvent: 0.9,
	}
	if *got != want {
		t.Errorf("splitCommands: got %+v, want %+v", *got, want)
	}
	if z := splitCommands(before, before, 0); z.ScriptCalls != 0 || z.ScriptMicrosPerEvent != 0 || z.EventsPerScriptCall != 0 {
		t.Errorf("no events, no change: got %+v, want zeros", *z)
	}
}
