//go:build !linux

package discordtest

import (
	"net"
	"time"
)

// arrivedAt is read where the kernel's receive time is not available.
func arrivedAt(_ net.Conn, read time.Time) time.Time { return read }
