// Command feathery is the Discord gateway daemon: it holds the gateway
// connections of one or many bots and publishes what Discord sends to Redis
// Streams. Run "feathery help" for its subcommands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "feathery: %s received, shutting down (again to exit at once)\n", s)
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "feathery: second signal, exiting at once")
		os.Exit(130)
	}()

	// SIGHUP (a closed terminal, systemd's reload) never kills feathery:
	// "run" reloads its config, the other commands ignore it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	m := NewMain()
	m.Hangup = hup
	err := m.Run(ctx, os.Args[1:])
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "feathery: "+oneLine(err.Error()))
		os.Exit(1)
	}
}
