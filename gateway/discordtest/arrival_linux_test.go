package discordtest

import (
	"io"
	"net"
	"testing"
	"time"
)

// arrivedAt stamps a frame with the kernel's receive time: read 300ms after
// the write (a reader starved in a busy process), the stamp still lies
// between the write and shortly after it, never before the write.
func TestArrivedAt_KernelReceiveTime(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	before := time.Now()
	if _, err := client.Write([]byte("identify")); err != nil {
		t.Fatal(err)
	}
	wrote := time.Now()
	// The starved reader: it reads long after the data arrived.
	const late = 300 * time.Millisecond
	time.Sleep(late)
	buf := make([]byte, 8)
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatal(err)
	}
	read := time.Now()
	at := arrivedAt(server, read)
	if at.Before(before) {
		t.Fatalf("stamp %v before the write started", before.Sub(at))
	}
	if at.After(read) {
		t.Fatalf("stamp %v after the read", at.Sub(read))
	}
	// Loopback delivers within the write; the stamp's error is a tick and
	// the slack. Half the reader's lateness is a generous bound.
	if at.Sub(wrote) > late/2 {
		t.Fatalf("stamp %v after the write, read %v after it: the stamp is the read, not the arrival", at.Sub(wrote), read.Sub(wrote))
	}
	// Not a socket: the read time.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := arrivedAt(a, read); !got.Equal(read) {
		t.Fatalf("pipe: got %v, want the read time", got)
	}
}
