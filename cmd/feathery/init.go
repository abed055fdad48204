package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

//go:embed feathery.example.yaml
var exampleConfig []byte

func (m *Main) runInit(_ context.Context, g globalFlags, args []string) error {
	fset := m.newFlagSet("init", "[-o feathery.yaml] [--force]", &g)
	out := fset.String("o", "feathery.yaml", "file to write (- for standard output)")
	force := fset.Bool("force", false, "overwrite an existing file")
	if err := parseFlags(fset, args); err != nil {
		return helpOK(err)
	}
	if *out == "-" {
		_, err := m.Stdout.Write(exampleConfig)
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(*out, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists (use --force to overwrite it)", *out)
	}
	if err != nil {
		return fmt.Errorf("create config: %w", err)
	}
	if _, err := f.Write(exampleConfig); err != nil {
		f.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	fmt.Fprintf(m.Stdout, "wrote %s; set DISCORD_TOKEN and run: feathery run -c %s\n", *out, *out)
	return nil
}
