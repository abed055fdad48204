package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// errUsage is returned after a usage message was printed; main exits with 2
// without printing anything more.
var errUsage = errors.New("usage")

// Main is the feathery command line. Tests build one with their own writers
// and environment and call Run.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// LookupEnv reads the environment for ${VAR} expansion in the config.
	LookupEnv func(string) (string, bool)
	// IsTerminal reports whether w is a terminal (for --log-format auto).
	IsTerminal func(w any) bool
	// Hangup delivers SIGHUP: "run" reloads its config; nil = never.
	Hangup <-chan os.Signal
}

// NewMain returns a Main bound to the process's standard streams and
// environment.
func NewMain() *Main {
	return &Main{
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		LookupEnv:  os.LookupEnv,
		IsTerminal: isTerminal,
	}
}

type command struct {
	name    string
	summary string
	run     func(m *Main, ctx context.Context, g globalFlags, args []string) error
}

func commands() []command {
	return []command{
		{"run", "run the gateway daemon from a config file", (*Main).runRun},
		{"init", "write a commented example config file", (*Main).runInit},
		{"new", "write a consumer (go, node, python) or a whole project to start from", (*Main).runNew},
		{"demo", "fake Discord + embedded Redis + the gateway, events visible", (*Main).runDemo},
		{"fakediscord", "serve the fake Discord gateway and REST API", (*Main).runFakeDiscord},
		{"receive", "connect the config's shards and drop every dispatch (the floor of bench: the gateway alone)", (*Main).runReceive},
		{"tail", "print a stream's entries live", (*Main).runTail},
		{"bench", "benchmark the pipeline end to end against the fake Discord and redis-benchmark", (*Main).runBench},
		{"version", "print the version", (*Main).runVersion},
	}
}

// Run runs the subcommand named by args[0] with the rest of args.
func (m *Main) Run(ctx context.Context, args []string) error {
	m.defaults()
	// Global flags may stand before the subcommand.
	var g globalFlags
	fs := flag.NewFlagSet("feathery", flag.ContinueOnError)
	fs.SetOutput(flagOutput{m.Stderr, m.Stdout})
	g.register(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() { m.usage(fs.Output()) } // help asked for: parseFlagsOnly sends it to Stdout
	if err := parseFlagsOnly(fs, args); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if *showVersion {
		fmt.Fprintf(m.Stdout, "feathery %s\n", version())
		return nil
	}
	args = fs.Args()
	if len(args) == 0 {
		m.usage(m.Stderr)
		return errUsage
	}
	name, rest := args[0], args[1:]
	if name == "help" {
		if len(rest) > 0 {
			return m.Run(ctx, []string{rest[0], "-h"})
		}
		m.usage(m.Stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(m, ctx, g, rest)
		}
	}
	fmt.Fprintf(m.Stderr, "feathery: unknown command %q\n\n", name)
	m.usage(m.Stderr)
	return errUsage
}

func (m *Main) defaults() {
	if m.Stdin == nil {
		m.Stdin = strings.NewReader("")
	}
	if m.Stdout == nil {
		m.Stdout = io.Discard
	}
	if m.Stderr == nil {
		m.Stderr = io.Discard
	}
	if m.LookupEnv == nil {
		m.LookupEnv = os.LookupEnv
	}
	if m.IsTerminal == nil {
		m.IsTerminal = isTerminal
	}
}

// usage writes the command list to w: standard output when asked for
// (help, -h), standard error after a mistake.
func (m *Main) usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("feathery — a Discord gateway daemon publishing to Redis Streams\n\nUsage:\n\n\tfeathery [--log-level L] [--log-format F] <command> [flags]\n\nCommands:\n\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "\t%-12s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun \"feathery <command> -h\" for a command's flags, \"feathery --version\" for the version.\n")
	b.WriteString("Start here: \"make run\" (the demo), then \"feathery new consumer --lang go my-consumer\".\n")
	fmt.Fprint(w, b.String())
}

// globalFlags are accepted before the subcommand and by every subcommand.
type globalFlags struct {
	logLevel  string
	logFormat string
}

func (g *globalFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.logLevel, "log-level", g.logLevel, "log level: debug, info, warn or error (default from the config, else info)")
	fs.StringVar(&g.logFormat, "log-format", g.logFormat, "log format: auto (text on a terminal, JSON otherwise), text or json")
}

// newFlagSet returns a subcommand's FlagSet with the global flags already
// registered into g (whose values from before the subcommand are kept).
func (m *Main) newFlagSet(name, usage string, g *globalFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("feathery "+name, flag.ContinueOnError)
	fs.SetOutput(flagOutput{m.Stderr, m.Stdout})
	g.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: feathery %s %s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlagsOnly parses args into fs. Usage asked for with -h goes to
// standard output and gives errHelp; a mistake and its usage go to fs's
// output (standard error) and give errUsage.
func parseFlagsOnly(fs *flag.FlagSet, args []string) error {
	errOut := fs.Output()
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(errOut)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = helpOutput(errOut).Write(buf.Bytes())
			return errHelp
		}
		_, _ = errOut.Write(buf.Bytes())
		return errUsage
	}
	return nil
}

// flagOutput is a FlagSet's output: mistakes go to err (standard error),
// help asked for to help (standard output).
type flagOutput struct{ err, help io.Writer }

func (o flagOutput) Write(p []byte) (int, error) { return o.err.Write(p) }

// helpOutput is where requested help goes for a FlagSet writing to out.
func helpOutput(out io.Writer) io.Writer {
	if o, ok := out.(flagOutput); ok {
		return o.help
	}
	return out
}

// parseFlags parses args into fs and refuses positional arguments; -h
// prints usage on standard output and returns errHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

// errHelp ends a subcommand after its usage was printed on request.
var errHelp = errors.New("help requested")

// helpOK turns errHelp into success.
func helpOK(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// oneLine folds an error message onto one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}
	return strings.Join(fields, "; ")
}
