package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux platform Go supports.
const clockTicks = 100

// ProcUsage is what a process has used so far.
type ProcUsage struct {
	// CPU is user + system time.
	CPU time.Duration
	// RSS is the resident set size in bytes (VmRSS).
	RSS int64
}

// ReadProcUsage reads a process's CPU time (/proc/<pid>/stat utime+stime)
// and resident memory (/proc/<pid>/status VmRSS). Linux only.
func ReadProcUsage(pid int) (ProcUsage, error) {
	var u ProcUsage
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return u, fmt.Errorf("read process %d stat: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, fmt.Errorf("read process %d stat: no command name", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return u, fmt.Errorf("read process %d stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return u, fmt.Errorf("read process %d stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	u.CPU = time.Duration(ut+st) * time.Second / clockTicks

	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return u, fmt.Errorf("read process %d status: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fs := strings.Fields(rest)
			if len(fs) < 1 {
				break
			}
			kb, err := strconv.ParseInt(fs[0], 10, 64)
			if err != nil {
				return u, fmt.Errorf("read process %d status: bad VmRSS %q", pid, rest)
			}
			u.RSS = kb * 1024
			return u, nil
		}
	}
	return u, fmt.Errorf("read process %d status: no VmRSS (zombie?)", pid)
}
