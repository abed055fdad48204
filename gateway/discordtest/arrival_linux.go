package discordtest

import (
	"net"
	"syscall"
	"time"
	"unsafe"
)

// jiffySlack covers the kernel's clock tick, the unit of
// tcpi_last_data_recv (HZ is at least 100): an arrival time computed from it
// may be up to one tick early, and the slack makes it never earlier than
// the real arrival.
const jiffySlack = 10 * time.Millisecond

// arrivedAt is when the kernel received the last data of nc, read being
// when the frame was read: min(read, when TCP_INFO says data last arrived).
// In a busy process the reading goroutine may run long after the frame
// arrived; the kernel's stamp does not wait for it. It is never earlier
// than the frame's arrival (a later segment only makes it later), never
// later than read, and read when nc is not a TCP socket.
func arrivedAt(nc net.Conn, read time.Time) time.Time {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return read
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return read
	}
	var (
		info syscall.TCPInfo
		got  bool
	)
	_ = rc.Control(func(fd uintptr) {
		n := uint32(unsafe.Sizeof(info))
		_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
		got = errno == 0
	})
	if !got {
		return read
	}
	// Taken after the call: the kernel's "now" was no later.
	probe := time.Now()
	at := probe.Add(-time.Duration(info.Last_data_recv)*time.Millisecond + jiffySlack)
	if at.After(read) {
		return read
	}
	return at
}
