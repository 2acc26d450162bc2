package benchline

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Status is /proc/PID/status: each field's words ("VmHWM": ["14200", "kB"]);
// nil if the process is gone.
func Status(pid int) map[string][]string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	st := map[string][]string{}
	for _, ln := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(ln, ":")
		if f := strings.Fields(v); ok && len(f) > 0 {
			st[k] = f
		}
	}
	return st
}

// KiB is a memory field of a Status (VmHWM, VmRSS) in KiB; 0 if it has none.
func KiB(st map[string][]string, k string) int64 {
	if f := st[k]; len(f) > 0 {
		n, _ := strconv.ParseInt(f[0], 10, 64)
		return n
	}
	return 0
}

// CPUTicks is the user + system time of the process, all threads, in clock
// ticks, from /proc/PID/stat.
func CPUTicks(pid int) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces; count from after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 { // f[0] is field 3 (state): utime is field 14, stime 15
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	return u + st, err1 == nil && err2 == nil
}

// Load1 is the one-minute load average as /proc/loadavg writes it; "" if
// unreadable.
func Load1() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
