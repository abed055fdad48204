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

func TestParseGoMem(t *testing.T) {
	text := "heap profile: 1: 2 [3: 4] @ heap/1048576\n# runtime.MemStats\n# Alloc = 123\n# HeapInuse = 40411136\n# Stack = 13434880 / 13434880\n# NumGC = 13\n"
	m, err := parseGoMem([]byte(text))
	if err != nil || m.HeapInuse != 40411136 || m.Stack != 13434880 {
		t.Errorf("parseGoMem: got %+v, %v; want HeapInuse 40411136, Stack 13434880", m, err)
	}
	for _, bad := range []string{"", "# HeapInuse = 1\n", "# Stack = 1 / 1\n", "# HeapInuse = x\n# Stack = 1 / 1\n"} {
		if _, err := parseGoMem([]byte(bad)); err == nil {
			t.Errorf("parseGoMem(%q): got no error, want one naming the missing line", bad)
		}
	}
}
