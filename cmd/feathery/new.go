package main

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"text/template"

	"github.com/feathery/feathery/broker/keyspace"
	pylib "github.com/feathery/feathery/consumers/python"
)

// templates holds the projects "feathery new" writes. Files ending in .tmpl
// are text/template sources with [[ ]] delimiters (the suffix is dropped);
// the others are copied as they are.
//
//go:embed all:templates
var templates embed.FS

// featheryModule is this module's path, required by generated Go consumers.
const featheryModule = "github.com/feathery/feathery"

// Versions written into generated projects. TestNew_Versions checks the Go
// ones against go.mod.
const (
	goVersion           = "1.26"
	disgoVersion        = "v0.18.15"
	rueidisVersion      = "v1.0.79"
	nodeRedisVersion    = "5.10.0"
	discordTypesVersion = "0.38.57"
	typescriptVersion   = "5.9.3"
	nodeTypesVersion    = "20.19.43"
)

// eventModel is an event a generated consumer can have a typed handler for,
// with how each language names its type and reads the id it is about.
type eventModel struct {
	Name string // MESSAGE_CREATE
	// KeyPath is the JSON path, in "d", of the id the handler prints
	// ("user.id"); GoKey reads the same id from disgo's type, as a string.
	KeyPath string
	GoKey   string
}

// Camel is the event name in CamelCase: MessageCreate.
func (e eventModel) Camel() string {
	var b strings.Builder
	for _, w := range strings.Split(e.Name, "_") {
		if w == "" {
			continue
		}
		b.WriteString(w[:1])
		b.WriteString(strings.ToLower(w[1:]))
	}
	return b.String()
}

// GoType is disgo's type of the event (package gateway).
func (e eventModel) GoType() string { return "gateway.Event" + e.Camel() }

// TSType is discord-api-types' type of the event's data (discord-api-types/v10).
func (e eventModel) TSType() string { return "Gateway" + e.Camel() + "DispatchData" }

// TSKey reads KeyPath in TypeScript.
func (e eventModel) TSKey() string { return "d." + e.KeyPath }

// PyType is the TypedDict of the event in feathery_events.py.
func (e eventModel) PyType() string { return e.Camel() }

// PyKey reads KeyPath in Python.
func (e eventModel) PyKey() string {
	var b strings.Builder
	b.WriteString("d")
	for _, p := range strings.Split(e.KeyPath, ".") {
		fmt.Fprintf(&b, "[%q]", p)
	}
	return b.String()
}

// FuncName is the handler's name: onMessageCreate.
func (e eventModel) FuncName() string { return "on" + e.Camel() }

// PyFuncName is the Python handler's name: on_message_create.
func (e eventModel) PyFuncName() string { return "on_" + strings.ToLower(e.Name) }

// eventModels are the events with typed handlers in all three languages.
var eventModels = []eventModel{
	{"READY", "session_id", "d.SessionID"},
	{"GUILD_CREATE", "id", "d.ID.String()"},
	{"GUILD_UPDATE", "id", "d.ID.String()"},
	{"GUILD_DELETE", "id", "d.ID.String()"},
	{"GUILD_MEMBER_ADD", "user.id", "d.User.ID.String()"},
	{"GUILD_MEMBER_UPDATE", "user.id", "d.User.ID.String()"},
	{"GUILD_MEMBER_REMOVE", "user.id", "d.User.ID.String()"},
	{"GUILD_MEMBERS_CHUNK", "guild_id", "d.GuildID.String()"},
	{"GUILD_ROLE_CREATE", "role.id", "d.Role.ID.String()"},
	{"GUILD_ROLE_UPDATE", "role.id", "d.Role.ID.String()"},
	{"GUILD_ROLE_DELETE", "role_id", "d.RoleID.String()"},
	{"GUILD_EMOJIS_UPDATE", "guild_id", "d.GuildID.String()"},
	{"CHANNEL_CREATE", "id", "d.ID().String()"},
	{"CHANNEL_UPDATE", "id", "d.ID().String()"},
	{"CHANNEL_DELETE", "id", "d.ID().String()"},
	{"THREAD_CREATE", "id", "d.ID().String()"},
	{"THREAD_UPDATE", "id", "d.ID().String()"},
	{"THREAD_DELETE", "id", "d.ID.String()"},
	{"THREAD_LIST_SYNC", "guild_id", "d.GuildID.String()"},
	{"MESSAGE_CREATE", "id", "d.ID.String()"},
	{"MESSAGE_UPDATE", "id", "d.ID.String()"},
	{"MESSAGE_DELETE", "id", "d.ID.String()"},
	{"MESSAGE_REACTION_ADD", "message_id", "d.MessageID.String()"},
	{"MESSAGE_REACTION_REMOVE", "message_id", "d.MessageID.String()"},
	{"INTERACTION_CREATE", "id", "d.ID().String()"},
	{"PRESENCE_UPDATE", "user.id", "d.PresenceUser.ID.String()"},
	{"VOICE_STATE_UPDATE", "user_id", "d.UserID.String()"},
	{"TYPING_START", "user_id", "d.UserID.String()"},
}

func eventModelOf(name string) (eventModel, bool) {
	for _, e := range eventModels {
		if e.Name == name {
			return e, true
		}
	}
	return eventModel{}, false
}

func eventNames() []string {
	out := make([]string, len(eventModels))
	for i, e := range eventModels {
		out[i] = e.Name
	}
	return out
}

// newData is what the templates see.
type newData struct {
	Name    string // the project's name: the directory's base name
	Lang    string
	Bot     string
	Prefix  string
	Group   string
	Streams []string
	Events  []eventModel

	// Go: the module path of the generated project, the feathery version it
	// requires and, when set, the local checkout it is replaced by.
	Module          string
	FeatheryVersion string
	ModulePath      string

	GoVersion, DisgoVersion, RueidisVersion string
	NodeRedisVersion, DiscordTypesVersion   string
	TypescriptVersion, NodeTypesVersion     string

	StreamList string // Streams, comma-separated
	EventList  string // the events' names, comma-separated
	RedisURL   string // default REDIS_URL
}

func (m *Main) runNew(ctx context.Context, g globalFlags, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		w := m.Stderr
		if len(args) > 0 {
			w = m.Stdout
		}
		fmt.Fprint(w, newUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "consumer":
		return m.runNewConsumer(ctx, g, args[1:])
	case "project":
		return m.runNewProject(ctx, g, args[1:])
	}
	fmt.Fprintf(m.Stderr, "feathery new: unknown kind %q (want consumer or project)\n\n%s", args[0], newUsage)
	return errUsage
}

const newUsage = `Usage:

	feathery new consumer --lang go|node|python [--events E1,E2] [--bot B] [--group G] DIR
	feathery new project [--lang go|node|python] [--bot B] DIR

"new consumer" writes a runnable consumer: a consumer-group reader that
acknowledges after success, reclaims entries of dead consumers, dead-letters
after N deliveries and stops cleanly, with one typed handler per event, a
README and a Dockerfile. "new project" writes a feathery config, a compose
file (Redis with AOF, feathery, the consumer) and a consumer.

Run "feathery new consumer -h" or "feathery new project -h" for the flags.
`

// flagSetWithArgs parses flags that may stand before or after one
// positional argument.
type flagSetWithArgs struct{ *flag.FlagSet }

func (fs *flagSetWithArgs) parseOneArg(args []string) (string, error) {
	var pos []string
	for {
		if err := parseFlagsOnly(fs.FlagSet, args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 {
		fmt.Fprintf(fs.Output(), "%s: want one directory, got %d arguments\n", fs.Name(), len(pos))
		fs.Usage()
		return "", errUsage
	}
	return pos[0], nil
}

// consumerFlags are the flags "new consumer" and "new project" share.
type consumerFlags struct {
	lang, events, bot, group, streams, prefix, module, modulePath *string
	force                                                         *bool
}

func (m *Main) consumerFlagSet(name string, g *globalFlags, defaultEvents string) (*flagSetWithArgs, *consumerFlags) {
	fs := m.newFlagSet("new "+name, "[flags] DIR", g)
	f := &consumerFlags{
		lang:       fs.String("lang", "", "consumer language: go, node or python"),
		events:     fs.String("events", defaultEvents, "events with a typed handler, comma-separated (one of: "+strings.Join(eventNames(), ", ")+")"),
		bot:        fs.String("bot", "demo", "bot whose streams are read (the demo's bot is demo)"),
		group:      fs.String("group", "", "consumer group (default: the directory's name)"),
		streams:    fs.String("streams", "", "streams to read, comma-separated full keys (default: the bot's events and commands streams)"),
		prefix:     fs.String("prefix", keyspace.DefaultPrefix, "key prefix of feathery's config (redis.prefix)"),
		module:     fs.String("module", "", "Go: module path of the generated project (default: the directory's name)"),
		modulePath: fs.String("module-path", "auto", "Go: a feathery checkout to build against (a replace directive); auto = the checkout this binary was run from, if any; none = require the released module"),
		force:      fs.Bool("force", false, "write into a directory that is not empty (files of the same name are overwritten)"),
	}
	return &flagSetWithArgs{fs}, f
}

func (m *Main) runNewConsumer(_ context.Context, g globalFlags, args []string) error {
	fs, f := m.consumerFlagSet("consumer", &g, "MESSAGE_CREATE,INTERACTION_CREATE,GUILD_MEMBER_ADD")
	dir, err := fs.parseOneArg(args)
	if err != nil {
		return helpOK(err)
	}
	d, err := m.consumerData(f, dir, true)
	if err != nil {
		return err
	}
	if err := prepareDir(dir, *f.force); err != nil {
		return err
	}
	files, err := writeConsumer(d.Lang, dir, d)
	if err != nil {
		return err
	}
	out := m.Stdout
	fmt.Fprintf(out, "wrote a %s consumer in %s; run it:\n\n", d.Lang, dir)
	for _, c := range consumerCommands(d.Lang, dir) {
		fmt.Fprintf(out, "  %s\n", c)
	}
	fmt.Fprintf(out, "\nIt reads %s through the group %s, with typed handlers for %s.\n",
		strings.Join(d.Streams, " and "), d.Group, strings.Join(eventNamesOf(d.Events), ", "))
	fmt.Fprintf(out, "Set REDIS_URL when Redis is not at redis://127.0.0.1:6379 (the demo's default). Files: %s\n", strings.Join(files, " "))
	return nil
}

// consumerCommands are the commands that run a generated consumer from the
// directory the generator was run in.
func consumerCommands(lang, dir string) []string {
	cd := "cd " + shellQuote(dir)
	switch lang {
	case "go":
		return []string{cd, "go mod tidy", "go run ."}
	case "node":
		return []string{cd, "npm install", "npm start"}
	default:
		return []string{cd, "python3 main.py   # needs the redis package: apt install python3-redis, or pip install redis"}
	}
}

// consumerData checks the flags and builds the templates' data.
func (m *Main) consumerData(f *consumerFlags, dir string, needLang bool) (newData, error) {
	var d newData
	d.Lang = *f.lang
	switch d.Lang {
	case "go", "node", "python":
	case "":
		if needLang {
			return d, errors.New("--lang: missing (go, node or python)")
		}
		d.Lang = "go"
	default:
		return d, fmt.Errorf("--lang: %q is not go, node or python", d.Lang)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return d, fmt.Errorf("resolve %s: %w", dir, err)
	}
	d.Name = filepath.Base(abs)
	if !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`).MatchString(d.Name) {
		return d, fmt.Errorf("%s: the directory's name %q makes a poor project name: use letters, digits, '.', '_' or '-'", dir, d.Name)
	}
	d.Bot = *f.bot
	if err := keyspace.CheckName(d.Bot); err != nil {
		return d, fmt.Errorf("--bot: %w", err)
	}
	d.Prefix = *f.prefix
	if err := keyspace.CheckName(d.Prefix); err != nil {
		return d, fmt.Errorf("--prefix: %w", err)
	}
	d.Group = *f.group
	if d.Group == "" {
		d.Group = d.Name
	}
	if strings.ContainsAny(d.Group, " \t\r\n{}") {
		return d, fmt.Errorf("--group: %q has spaces or braces", d.Group)
	}
	if *f.streams != "" {
		for _, s := range strings.Split(*f.streams, ",") {
			if s = strings.TrimSpace(s); s != "" {
				d.Streams = append(d.Streams, s)
			}
		}
		if len(d.Streams) == 0 {
			return d, errors.New("--streams: no stream given")
		}
	} else {
		keys := keyspace.NewKeys(d.Prefix)
		d.Streams = []string{keys.Events(d.Bot), keys.Stream(d.Bot, "commands")}
	}
	d.StreamList = strings.Join(d.Streams, ",")
	seen := map[string]bool{}
	for _, name := range strings.Split(*f.events, ",") {
		name = strings.ToUpper(strings.TrimSpace(name))
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		e, ok := eventModelOf(name)
		if !ok {
			return d, fmt.Errorf("--events: no typed handler for %q (known: %s)", name, strings.Join(eventNames(), ", "))
		}
		d.Events = append(d.Events, e)
	}
	if len(d.Events) == 0 {
		return d, errors.New("--events: no event given")
	}
	d.EventList = strings.Join(eventNamesOf(d.Events), ",")
	d.Module = *f.module
	if d.Module == "" {
		d.Module = d.Name
	}
	d.FeatheryVersion, d.ModulePath, err = featheryRequirement(*f.modulePath)
	if err != nil {
		return d, err
	}
	d.GoVersion, d.DisgoVersion, d.RueidisVersion = goVersion, disgoVersion, rueidisVersion
	d.NodeRedisVersion, d.DiscordTypesVersion = nodeRedisVersion, discordTypesVersion
	d.TypescriptVersion, d.NodeTypesVersion = typescriptVersion, nodeTypesVersion
	d.RedisURL = "redis://127.0.0.1:6379"
	return d, nil
}

func eventNamesOf(es []eventModel) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Name
	}
	return out
}

// featheryRequirement is the feathery version a generated go.mod requires
// and the checkout it is replaced by ("" for none). flag is a directory,
// "auto" or "none".
func featheryRequirement(flag string) (version, replace string, err error) {
	const untagged = "v0.0.0-00010101000000-000000000000"
	version = untagged
	if info, ok := debug.ReadBuildInfo(); ok && strings.HasPrefix(info.Main.Version, "v") && info.Main.Path == featheryModule {
		version = info.Main.Version
	}
	switch flag {
	case "none":
		return version, "", nil
	case "auto", "":
		var starts []string
		if wd, err := os.Getwd(); err == nil {
			starts = append(starts, wd)
		}
		if exe, err := os.Executable(); err == nil {
			starts = append(starts, filepath.Dir(exe))
		}
		for _, s := range starts {
			if root, ok := findCheckout(s); ok {
				return untagged, root, nil
			}
		}
		return version, "", nil
	}
	abs, err := filepath.Abs(flag)
	if err != nil {
		return "", "", fmt.Errorf("--module-path: %w", err)
	}
	if !isCheckout(abs) {
		return "", "", fmt.Errorf("--module-path: %s has no go.mod of %s", abs, featheryModule)
	}
	return untagged, abs, nil
}

// findCheckout looks for a feathery checkout at dir and above it.
func findCheckout(dir string) (string, bool) {
	for {
		if isCheckout(dir) {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func isCheckout(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return strings.TrimSpace(string(line)) == "module "+featheryModule
}

// prepareDir creates dir, or checks that it is empty unless force.
func prepareDir(dir string, force bool) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("read %s: %w", dir, err)
	case len(entries) > 0 && !force:
		return fmt.Errorf("%s is not empty (use --force to write into it)", dir)
	}
	return nil
}

// writeConsumer writes a consumer project of lang into dir: its templates
// and, for Python, the library modules of consumers/python.
func writeConsumer(lang, dir string, d any) ([]string, error) {
	files, err := writeTemplates(path.Join("templates/consumer", lang), dir, d)
	if err != nil || lang != "python" {
		return files, err
	}
	entries, err := fs.ReadDir(pylib.Library, ".")
	if err != nil {
		return nil, fmt.Errorf("read the python library: %w", err)
	}
	for _, e := range entries {
		b, err := pylib.Library.ReadFile(e.Name())
		if err != nil {
			return nil, fmt.Errorf("read the python library: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", e.Name(), err)
		}
		files = append(files, e.Name())
	}
	slices.Sort(files)
	return files, nil
}

// writeTemplates renders every file under root into dir and returns the
// paths written, relative to dir.
func writeTemplates(root, dir string, d any) ([]string, error) {
	var written []string
	err := fs.WalkDir(templates, root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		if e.IsDir() {
			if rel != "" {
				return os.MkdirAll(filepath.Join(dir, filepath.FromSlash(rel)), 0o755)
			}
			return nil
		}
		src, err := templates.ReadFile(p)
		if err != nil {
			return err
		}
		// Files whose name starts with "dot-" are written as dotfiles (the
		// embed pattern would skip a real dotfile).
		base := path.Base(rel)
		if strings.HasPrefix(base, "dot-") {
			rel = path.Join(path.Dir(rel), "."+strings.TrimPrefix(base, "dot-"))
		}
		out := src
		if strings.HasSuffix(rel, ".tmpl") {
			rel = strings.TrimSuffix(rel, ".tmpl")
			t, err := template.New(p).Delims("[[", "]]").Funcs(templateFuncs).Parse(string(src))
			if err != nil {
				return fmt.Errorf("parse template %s: %w", p, err)
			}
			var b bytes.Buffer
			if err := t.Execute(&b, d); err != nil {
				return fmt.Errorf("render %s: %w", p, err)
			}
			out = b.Bytes()
		}
		mode := os.FileMode(0o644)
		if bytes.HasPrefix(out, []byte("#!")) {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(rel)), out, mode); err != nil {
			return fmt.Errorf("write %s: %w", rel, err)
		}
		written = append(written, rel)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(written)
	return written, nil
}

var templateFuncs = template.FuncMap{
	"join": strings.Join,
	"quote": func(s string) string {
		return fmt.Sprintf("%q", s)
	},
	"pyList": func(ss []string) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = fmt.Sprintf("%q", s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	},
	"upper": strings.ToUpper,
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if regexp.MustCompile(`^[A-Za-z0-9_./:=@%+-]+$`).MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// projectData is what the project templates see.
type projectData struct {
	newData
	GroupList           string   // YAML flow list of the consumer group
	FeatheryContext     string   // compose build context of feathery
	FeatheryContextNote string   // where feathery is built from, for people
	Commands            []string // the commands that start the project
}

// featheryGitURL is the build context of feathery when no checkout is known.
const featheryGitURL = "https://github.com/feathery/feathery.git"

func (m *Main) runNewProject(_ context.Context, g globalFlags, args []string) error {
	fs, f := m.consumerFlagSet("project", &g, "MESSAGE_CREATE,INTERACTION_CREATE,GUILD_MEMBER_ADD")
	fs.Lookup("bot").DefValue = "main"
	_ = fs.Set("bot", "main")
	fs.Lookup("lang").Usage = "consumer language: go (default), node or python"
	dir, err := fs.parseOneArg(args)
	if err != nil {
		return helpOK(err)
	}
	d, err := m.consumerData(f, dir, false)
	if err != nil {
		return err
	}
	if err := prepareDir(dir, *f.force); err != nil {
		return err
	}
	p := projectData{newData: d, GroupList: "[" + d.Group + "]",
		FeatheryContext: featheryGitURL, FeatheryContextNote: "feathery's repository"}
	if d.ModulePath != "" {
		p.FeatheryContext, p.FeatheryContextNote = d.ModulePath, "the checkout "+d.ModulePath
	}
	p.Commands = []string{"cd " + shellQuote(dir)}
	if d.Lang == "go" && d.ModulePath != "" {
		p.Commands = append(p.Commands, "(cd consumer && go mod tidy && go mod vendor)   # the consumer builds against the checkout")
	}
	p.Commands = append(p.Commands, "DISCORD_TOKEN=your-bot-token docker compose up --build")

	files, err := writeTemplates("templates/project", dir, p)
	if err != nil {
		return err
	}
	cdir := filepath.Join(dir, "consumer")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", cdir, err)
	}
	cd := d
	cd.Name = d.Name + "-consumer"
	if *f.module == "" {
		cd.Module = cd.Name
	}
	cfiles, err := writeConsumer(d.Lang, cdir, cd)
	if err != nil {
		return err
	}
	for _, c := range cfiles {
		files = append(files, path.Join("consumer", c))
	}
	out := m.Stdout
	fmt.Fprintf(out, "wrote a feathery project in %s; start it:\n\n", dir)
	for _, c := range p.Commands {
		fmt.Fprintf(out, "  %s\n", c)
	}
	fmt.Fprintf(out, "\nfeathery.yaml: bot %s (token from DISCORD_TOKEN), Redis from REDIS_URL; check it with: feathery run --check -c %s\n",
		d.Bot, shellQuote(filepath.Join(dir, "feathery.yaml")))
	fmt.Fprintf(out, "compose.yaml: Redis with AOF, feathery, the %s consumer in consumer/ (%s).\n", d.Lang, strings.Join(eventNamesOf(d.Events), ", "))
	fmt.Fprintf(out, "Files: %s\n", strings.Join(files, " "))
	return nil
}
